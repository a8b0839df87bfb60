"""Benchmark inputs (photo-like JPEGs) and the floor: the image work any bot must do per job.

Inputs are not flat colours (which JPEG compresses to nothing and decodes for free): a smooth
random colour field (a 16×12 random image upscaled bicubically), 60 random filled ellipses and
rectangles, a slight blur, then per-pixel luminance noise of ±12 — which gives the file sizes of
real photos: ~0.35 MB for 1024×1024 and ~3.9 MB for 4000×3000 at JPEG quality 90 (a 12 MP phone
photo is typically 3-5 MB). Generation is seeded, so every run sends the same bytes.

The floor follows the bot's own image choices, taken from :mod:`bot.core.images` so that it
follows them if they change: JPEG draft decoding toward ``DRAFT_SIDE``, a centre-crop "cover"
resize to the request size with LANCZOS and ``reducing_gap``, JPEG at the request quality,
base64 and ``json.dumps`` of the request body, and the result passed through as bytes (it fits
Discord's upload limit, so nothing is re-encoded). ``tight`` adds the same with the draft scale
chosen for the request size instead (the least decoding that still covers it) — what a bot
that knows the target size before decoding could do.
"""

from __future__ import annotations

import base64
import io
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from bot.core import images as bot_images

Size = tuple[int, int]


def photo_like(size: Size, *, seed: int = 1, noise: int = 12, quality: int = 90) -> bytes:
    """A seeded, photo-like JPEG of ``size`` (see the module docstring)."""
    width, height = size
    rng = random.Random(seed)
    field = Image.frombytes("RGB", (16, 12), rng.randbytes(16 * 12 * 3))
    image = field.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        box = (
            x0,
            y0,
            x0 + rng.randrange(width // 20, width // 3),
            y0 + rng.randrange(height // 20, height // 3),
        )
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(max(1.0, width / 800)))
    grain = Image.frombytes("L", size, rng.randbytes(width * height))
    grain = grain.point(lambda v: 128 + (v - 128) * noise // 128)
    image = ImageChops.add(image, Image.merge("RGB", (grain, grain, grain)), 1.0, -128)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def result_like(size: Size, *, seed: int = 2) -> bytes:
    """What the upstream sends back: a JPEG (quality 90, like the stand-in) of the request size."""
    return photo_like(size, seed=seed, noise=8, quality=90)


@dataclass(frozen=True)
class Floor:
    """Median milliseconds of each step of the floor, and their sum."""

    decode_ms: float
    resize_ms: float
    encode_ms: float
    body_ms: float  # base64 + json.dumps of the request body
    passthrough_ms: float
    request_bytes: int
    decoded_size: Size

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.resize_ms + self.encode_ms + self.body_ms + self.passthrough_ms

    def as_dict(self) -> dict[str, object]:
        return {
            "decode_ms": self.decode_ms,
            "resize_ms": self.resize_ms,
            "encode_ms": self.encode_ms,
            "body_ms": self.body_ms,
            "passthrough_ms": self.passthrough_ms,
            "total_ms": self.total_ms,
            "request_bytes": self.request_bytes,
            "decoded_size": list(self.decoded_size),
        }


def _cover_box(source: Size, target: Size) -> tuple[float, float, float, float]:
    sw, sh = source
    tw, th = target
    if sw * th > tw * sh:
        kept = sh * tw / th
        return ((sw - kept) / 2, 0, (sw + kept) / 2, sh)
    kept = sw * th / tw
    return (0, (sh - kept) / 2, sw, (sh + kept) / 2)


def _timed(func: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = func()
    return 1000 * (time.perf_counter() - start), value


def measure_floor(
    data: bytes, request_size: Size, result: bytes, *, reps: int = 15, tight: bool = False
) -> Floor:
    """The floor for one input, median of ``reps`` runs after two warm-ups (one thread)."""
    draft_to = request_size if tight else (bot_images.DRAFT_SIDE, bot_images.DRAFT_SIDE)
    steps: dict[str, list[float]] = {k: [] for k in ("decode", "resize", "encode", "body", "pass")}
    request = b""
    decoded_size: Size = (0, 0)
    for n in range(reps + 2):

        def decode() -> Image.Image:
            im = Image.open(io.BytesIO(data))
            im.draft("RGB", draft_to)
            im.load()
            return im if im.mode == "RGB" else im.convert("RGB")

        t_decode, decoded = _timed(decode)
        assert isinstance(decoded, Image.Image)
        decoded_size = decoded.size
        box = _cover_box(decoded.size, request_size)
        t_resize, resized = _timed(
            lambda d=decoded, b=box: d.resize(
                request_size,
                bot_images.RESAMPLE,
                box=b,
                reducing_gap=bot_images.REDUCING_GAP,
            )
        )
        assert isinstance(resized, Image.Image)

        def encode(r: Image.Image = resized) -> bytes:
            buf = io.BytesIO()
            r.save(buf, "JPEG", quality=bot_images.REQUEST_JPEG_QUALITY)
            return buf.getvalue()

        t_encode, encoded = _timed(encode)
        assert isinstance(encoded, bytes)
        request = encoded
        t_body, _ = _timed(
            lambda e=encoded: json.dumps(
                {
                    "image": base64.b64encode(e).decode("ascii"),
                    "prompt": "a photo",
                    "img_width": request_size[0],
                    "img_height": request_size[1],
                }
            ).encode()
        )
        t_pass, _ = _timed(lambda: bytes(memoryview(result)))
        if n >= 2:
            for key, value in zip(
                steps, (t_decode, t_resize, t_encode, t_body, t_pass), strict=True
            ):
                steps[key].append(value)
    med = {k: statistics.median(v) for k, v in steps.items()}
    return Floor(
        med["decode"],
        med["resize"],
        med["encode"],
        med["body"],
        med["pass"],
        len(request),
        decoded_size,
    )
