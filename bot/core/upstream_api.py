"""Every fact about Segmind's SD1.5 API, in one place.

Sources: ``shared/seeds/`` (the provider's docs pages, where each range reads "min: X, min: Y"
and Y is the maximum) and PRODUCT.md. Facts marked UNCONFIRMED are our best reading; when the
provider corrects one, change it here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

DEFAULT_BASE_URL: Final = "https://api.segmind.com"
IMG2IMG_PATH: Final = "/v1/sd1.5-img2img"
OUTPAINT_PATH: Final = "/v1/sd1.5-outpaint"

API_KEY_HEADER: Final = "x-api-key"
# Keys look like "SG_" + 16 hex digits. Checked only to catch a pasted-wrong value early.
API_KEY_PATTERN: Final = re.compile(r"SG_[0-9a-fA-F]{16}")
REMAINING_CREDITS_HEADER: Final = "x-remaining-credits"
# A 429 may carry this (not Retry-After); its format is UNCONFIRMED, so several are parsed.
RATE_LIMIT_RESET_HEADER: Final = "x-rate-limit-reset-at-utc"

# Statuses with a documented meaning. 406 is also used for a wrong Content-Type or a team
# spend cap: the message body says which.
STATUS_UNAUTHORIZED: Final = 401
STATUS_NOT_FOUND: Final = 404
STATUS_METHOD_NOT_ALLOWED: Final = 405
STATUS_NOT_ENOUGH_CREDITS: Final = 406
STATUS_VALIDATION: Final = 422
STATUS_RATE_LIMITED: Final = 429
MISCONFIGURATION_STATUSES: Final = frozenset({401, 404, 405})
# UNCONFIRMED wording: a 406 whose message is about the request's Content-Type (our bug, not
# the balance) is a misconfiguration, not "out of credits".
NOT_ACCEPTABLE_CONTENT_TYPE: Final = re.compile(r"content[-_ ]?type", re.IGNORECASE)

# img2img with ``base64: true`` answers JSON instead of image bytes; the bot asks for it when
# samples > 1. UNCONFIRMED: the key holding the image(s); a string or a list under either.
BASE64_JSON_IMAGE_KEYS: Final = ("images", "image")

# Result formats we accept back, sniffed from the bytes (documented as image/jpeg).
RESULT_FORMATS: Final = ("JPEG", "PNG", "WEBP")

# Plans: about 5 requests/minute free, 50 on Pro. Concurrency limits are not published.
FREE_PLAN_REQUESTS_PER_MINUTE: Final = 5

# UNCONFIRMED: the SDK's scheduler list; the docs page lists none.
SCHEDULERS: Final = (
    "DDIM",
    "DPM Multi",
    "DPM Single",
    "Euler a",
    "Euler",
    "Heun",
    "DPM2 a Karras",
    "DPM2 Karras",
    "LMS",
    "PNDM",
    "DDPM",
)
DEFAULT_SCHEDULER: Final = "DDIM"


@dataclass(frozen=True)
class NumberRange:
    """An inclusive range with the default the bot uses when the member gives none."""

    low: float
    high: float
    default: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        def fmt(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else str(x)

        return f"{fmt(self.low)} to {fmt(self.high)}"


# Seeds: -1 asks the API for a random one; the bot always picks its own so it can show it.
SEED_RANGE: Final = NumberRange(0, 2**32 - 1, -1)
PROMPT_MAX_CHARS: Final = 2000  # UNCONFIRMED upstream limit; CLIP reads 77 tokens anyway.

# img2img: ranges and upstream defaults from the docs page. ``default`` is the BOT's default
# where PRODUCT.md sets one (strength 0.75, steps 25 instead of the API's 1 and 20).
IMG2IMG_SAMPLES: Final = NumberRange(1, 4, 1)
IMG2IMG_STEPS: Final = NumberRange(20, 100, 25)
IMG2IMG_GUIDANCE: Final = NumberRange(0.1, 25, 7.5)
IMG2IMG_STRENGTH: Final = NumberRange(0.1, 1, 0.75)
IMG2IMG_SIDES: Final = (512, 768)

# outpaint
OUTPAINT_STEPS: Final = NumberRange(25, 100, 25)
OUTPAINT_GUIDANCE: Final = NumberRange(0.1, 25, 7.5)
OUTPAINT_STRENGTH: Final = NumberRange(0.1, 1, 1)
OUTPAINT_SCALE: Final = NumberRange(0.1, 10, 1)
OUTPAINT_OFFSET: Final = NumberRange(0, 1024, 0)
OUTPAINT_MASK_EXPAND: Final = NumberRange(0, 256, 8)
OUTPAINT_SIDES: Final = (768, 1024)

# UNCONFIRMED: how ``scale`` works. Our reading: the API draws the input image at
# (input size × scale) with its top-left corner at (offset_x, offset_y) on the canvas. The
# presets therefore resize the input to its exact size on the canvas and send scale 1.
OUTPAINT_PRESET_SCALE: Final = 1.0

# Which options change the price ("Affects Pricing" on the docs page). UNCONFIRMED whether
# resolution really does; outpaint's page marks nothing, so steps are assumed to.
PRICE_AFFECTING: Final = {
    "img2img": frozenset({"samples", "num_inference_steps", "img_width", "img_height"}),
    "outpaint": frozenset({"num_inference_steps"}),
}


def allowed_sizes(sides: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Every width×height pair the API accepts for a kind of job."""
    return tuple((w, h) for w in sides for h in sides)


IMG2IMG_SIZES: Final = allowed_sizes(IMG2IMG_SIDES)
OUTPAINT_CANVASES: Final = allowed_sizes(OUTPAINT_SIDES)
