"""Typed, validated, immutable parameters for one generation job.

Build them with :func:`img2img_params` / :func:`outpaint_params`, which check every option
against :mod:`bot.core.upstream_api` and raise :class:`InvalidParameter` naming the option,
the value and the allowed range. A params object that exists is valid.
"""

from __future__ import annotations

import enum
import math
import secrets
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from bot.core import upstream_api as api
from bot.core.errors import InvalidParameter


class JobKind(enum.StrEnum):
    IMG2IMG = "img2img"
    OUTPAINT = "outpaint"

    @property
    def path(self) -> str:
        return api.IMG2IMG_PATH if self is JobKind.IMG2IMG else api.OUTPAINT_PATH


Size = tuple[int, int]


@dataclass(frozen=True)
class _Common:
    """The settings both endpoints take."""

    prompt: str
    negative_prompt: str
    strength: float
    steps: int
    guidance: float
    scheduler: str
    seed: int

    kind: ClassVar[JobKind]

    def _payload(self, image_b64: str, size: Size) -> dict[str, Any]:
        body: dict[str, Any] = {
            "image": image_b64,
            "prompt": self.prompt,
            "scheduler": self.scheduler,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "strength": self.strength,
            "seed": self.seed,
            "img_width": size[0],
            "img_height": size[1],
        }
        if self.negative_prompt:
            body["negative_prompt"] = self.negative_prompt
        return body

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, **asdict(self)}


@dataclass(frozen=True)
class Img2ImgParams(_Common):
    samples: int
    size: Size  # (img_width, img_height); the input is cropped and resized to it

    kind: ClassVar[JobKind] = JobKind.IMG2IMG

    @property
    def input_size(self) -> Size:
        return self.size

    @property
    def output_size(self) -> Size:
        return self.size

    def payload(self, image_b64: str) -> dict[str, Any]:
        """The JSON body of the request (the image already encoded)."""
        return self._payload(image_b64, self.size) | {
            "samples": self.samples,
            # A raw image body can carry one image only; several come back as JSON.
            "base64": self.samples > 1,
        }


@dataclass(frozen=True)
class OutpaintParams(_Common):
    canvas: Size  # (img_width, img_height)
    offset_x: int
    offset_y: int
    scale: float
    mask_expand: int
    input_size: Size  # what the input is resized to before it is sent
    direction: str = "custom"

    kind: ClassVar[JobKind] = JobKind.OUTPAINT
    samples: ClassVar[int] = 1  # the outpaint endpoint makes one image per call

    @property
    def output_size(self) -> Size:
        return self.canvas

    def payload(self, image_b64: str) -> dict[str, Any]:
        return self._payload(image_b64, self.canvas) | {
            "scale": self.scale,
            "offset_x": self.offset_x,
            "offset_y": self.offset_y,
            "mask_expand": self.mask_expand,
        }


JobParams = Img2ImgParams | OutpaintParams


# --- validation helpers ----------------------------------------------------------------------

# Zero-width and bidi controls hide text from moderators and break Discord's rendering.
_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}


def clean_prompt(option: str, text: str | None, *, required: bool) -> str:
    """NFKC-normalise, drop control/format characters, collapse whitespace, cap the length."""
    text = unicodedata.normalize("NFKC", text or "")
    kept = []
    for ch in text:
        if ch in _INVISIBLE:
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn"):
            kept.append(" " if ch in "\n\r\t" else "")
        else:
            kept.append(ch)
    cleaned = " ".join("".join(kept).split())
    if required and not cleaned:
        raise InvalidParameter(option, text, "a non-empty text")
    if len(cleaned) > api.PROMPT_MAX_CHARS:
        raise InvalidParameter(
            option, f"{len(cleaned)} characters", f"at most {api.PROMPT_MAX_CHARS} characters"
        )
    return cleaned


def _number(option: str, value: object, rng: api.NumberRange) -> float:
    if value is None:
        return float(rng.default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameter(option, value, f"a number from {rng.describe()}")
    if not rng.contains(value):
        raise InvalidParameter(option, value, f"from {rng.describe()}")
    return float(value)


def _integer(option: str, value: object, rng: api.NumberRange) -> int:
    if value is None:
        return int(rng.default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(option, value, f"a whole number from {rng.describe()}")
    if not rng.contains(value):
        raise InvalidParameter(option, value, f"a whole number from {rng.describe()}")
    return value


def _scheduler(value: str | None) -> str:
    if value is None:
        return api.DEFAULT_SCHEDULER
    if value not in api.SCHEDULERS:
        raise InvalidParameter("scheduler", value, "one of " + ", ".join(api.SCHEDULERS))
    return value


def _seed(value: int | None) -> int:
    if value is None or value == -1:
        return secrets.randbelow(int(api.SEED_RANGE.high) + 1)
    return _integer("seed", value, api.SEED_RANGE)


def _size(option: str, value: Size | str | None, allowed: tuple[Size, ...]) -> Size | None:
    if value is None:
        return None
    size = parse_size(value) if isinstance(value, str) else value
    if size not in allowed:
        raise InvalidParameter(option, format_size(value), "one of " + _sizes_text(allowed))
    return size


def _sizes_text(allowed: tuple[Size, ...]) -> str:
    return ", ".join(format_size(s) for s in allowed)


def parse_size(text: str) -> Size | str:
    """ "768x512" → (768, 512); anything else is returned as is (and then refused)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return text


def format_size(size: Size | str) -> str:
    return size if isinstance(size, str) else f"{size[0]}x{size[1]}"


def _check_steps_run(steps: int, strength: float) -> None:
    # diffusers runs int(steps × strength) denoising steps and crashes on zero.
    if int(steps * strength) < 1:
        raise InvalidParameter(
            "strength", strength, f"high enough that steps × strength ≥ 1 (steps is {steps})"
        )


def closest_size(width: int, height: int, allowed: tuple[Size, ...]) -> Size:
    """The allowed size whose aspect ratio is closest to width:height; the smaller on a tie."""
    target = math.log(width / height)
    return min(allowed, key=lambda s: (abs(math.log(s[0] / s[1]) - target), s[0] * s[1]))


# --- builders ----------------------------------------------------------------------------------


def img2img_params(
    *,
    prompt: str,
    input_size: Size,
    negative_prompt: str | None = None,
    strength: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
    samples: int | None = None,
    size: Size | str | None = None,
) -> Img2ImgParams:
    """Validate raw options; ``input_size`` (the decoded input's size) picks the default size."""
    strength_v = _number("strength", strength, api.IMG2IMG_STRENGTH)
    steps_v = _integer("steps", steps, api.IMG2IMG_STEPS)
    _check_steps_run(steps_v, strength_v)
    return Img2ImgParams(
        prompt=clean_prompt("prompt", prompt, required=True),
        negative_prompt=clean_prompt("negative_prompt", negative_prompt, required=False),
        strength=strength_v,
        steps=steps_v,
        guidance=_number("guidance", guidance, api.IMG2IMG_GUIDANCE),
        scheduler=_scheduler(scheduler),
        seed=_seed(seed),
        samples=_integer("samples", samples, api.IMG2IMG_SAMPLES),
        size=_size("size", size, api.IMG2IMG_SIZES) or closest_size(*input_size, api.IMG2IMG_SIZES),
    )


def outpaint_params(
    *,
    prompt: str,
    input_size: Size,
    negative_prompt: str | None = None,
    direction: str | None = None,
    canvas: Size | str | None = None,
    offset_x: int | None = None,
    offset_y: int | None = None,
    scale: float | None = None,
    mask_expand: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    strength: float | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
) -> OutpaintParams:
    """Validate raw options and place the input on the canvas (see :mod:`bot.core.presets`)."""
    from bot.core.presets import Direction, place

    try:
        direction_v = Direction(direction or Direction.ZOOM_OUT.value)
    except ValueError:
        choices = ", ".join(d.value for d in Direction)
        raise InvalidParameter("direction", direction, "one of " + choices) from None
    custom = direction_v is Direction.CUSTOM
    if not custom:
        for option, value in (("offset_x", offset_x), ("offset_y", offset_y), ("scale", scale)):
            if value is not None:
                raise InvalidParameter(option, value, "only used with direction `custom`")
    strength_v = _number("strength", strength, api.OUTPAINT_STRENGTH)
    steps_v = _integer("steps", steps, api.OUTPAINT_STEPS)
    _check_steps_run(steps_v, strength_v)
    placement = place(
        input_size,
        direction_v,
        canvas=_size("canvas", canvas, api.OUTPAINT_CANVASES),
        offset_x=_integer("offset_x", offset_x, api.OUTPAINT_OFFSET) if custom else None,
        offset_y=_integer("offset_y", offset_y, api.OUTPAINT_OFFSET) if custom else None,
        scale=_number("scale", scale, api.OUTPAINT_SCALE) if custom else None,
    )
    return OutpaintParams(
        prompt=clean_prompt("prompt", prompt, required=True),
        negative_prompt=clean_prompt("negative_prompt", negative_prompt, required=False),
        strength=strength_v,
        steps=steps_v,
        guidance=_number("guidance", guidance, api.OUTPAINT_GUIDANCE),
        scheduler=_scheduler(scheduler),
        seed=_seed(seed),
        canvas=placement.canvas,
        offset_x=placement.offset_x,
        offset_y=placement.offset_y,
        scale=placement.scale,
        mask_expand=_integer("mask_expand", mask_expand, api.OUTPAINT_MASK_EXPAND),
        input_size=placement.input_size,
        direction=direction_v.value,
    )


def params_from_dict(data: dict[str, Any]) -> JobParams:
    """Rebuild stored params (e.g. from the jobs table) without re-validating."""
    data = dict(data)
    kind = JobKind(data.pop("kind"))
    for key in ("size", "canvas", "input_size"):
        if key in data:
            data[key] = tuple(data[key])
    if kind is JobKind.IMG2IMG:
        return Img2ImgParams(**data)
    return OutpaintParams(**data)
