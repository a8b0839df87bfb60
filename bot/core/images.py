"""The image pipeline: untrusted bytes in, a clean RGB image out; request and result encoding.

No Discord and no HTTP here. Every function except the ``*_async`` wrappers is synchronous and
CPU-bound: the event loop reaches them only through those wrappers, which run them on a small
dedicated thread pool (see :func:`_image_executor`).

Decisions (see ``shared/notes/reliability.md`` §1 for the background):

- Formats: an allow-list sniffed from the magic bytes (PNG, JPEG incl. MPO, WebP, GIF), and
  ``Image.open(..., formats=[sniffed])`` so no other Pillow plugin is ever reached.
- Size checks run on the header BEFORE Pillow touches the file: we read the declared size
  ourselves (:func:`declared_size`), because opening a WebP already allocates its whole canvas.
  They run again on ``im.size`` after the lazy open, before any pixel is decoded.
- Bomb guard: ``Image.MAX_IMAGE_PIXELS`` is process-global, so per-call limits cannot live there
  without racing between threads. We leave Pillow's default (89.5 MP, error at 2×) untouched as a
  backstop and enforce :class:`ImageLimits` ourselves; if Pillow's guard fires anyway (limits set
  above it, or ``-W error``), its DecompressionBombError/Warning becomes TooManyPixels.
  ``warnings.catch_warnings`` is not thread-safe on 3.11, so it is not used either.
- Animation: animated GIF/WebP/APNG are refused (a member who sends a GIF expects motion, and
  silently using frame 0 would surprise them). MPO, the multi-picture JPEG phones write, is a still
  photo with extra views: frame 0 is used. ``n_frames`` is never read (it walks a whole GIF).
- Aspect ratio: longest/shortest ≤ 8 (phone panoramas and 32:9 screenshots pass; strips that
  would be a few pixels thick on the API's canvas do not).
- Resampling: LANCZOS with ``reducing_gap=2.0`` (Pillow's ``thumbnail`` default): measured
  4000×3000→768×576 at ~60 ms vs ~130 ms without the gap; BICUBIC saves only ~20 ms more,
  which is nothing next to the API's seconds, and LANCZOS keeps detail SD builds on.
- Request encoding: JPEG quality 95 (4:2:0). ~2.5 ms and ~200 KiB for 768² versus ~230-300 ms
  and ~600 KiB-1.2 MiB for PNG; SD's VAE works at 1/8 resolution, far below q95 artefacts.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import io
import logging
import os
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal, ParamSpec, TypeVar

from PIL import Image, ImageOps

from bot.core import upstream_api as api
from bot.core.errors import (
    AnimatedImage,
    BadImage,
    EmptyImage,
    ExtremeAspectRatio,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
    UpstreamBadResponse,
)
from bot.core.params import Size

log = logging.getLogger(__name__)


T = TypeVar("T")
P = ParamSpec("P")
Fit = Literal["cover", "exact"]

WHITE: Final = (255, 255, 255)
RESAMPLE: Final = Image.Resampling.LANCZOS
REDUCING_GAP: Final = 2.0
REQUEST_JPEG_QUALITY: Final = 95
# JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale still at least this big on both
# sides: nothing the API takes is larger (img2img 768, outpaint canvas 1024).
DRAFT_SIDE: Final = max(api.IMG2IMG_SIDES + api.OUTPAINT_SIDES)
# Re-encoding a result that is over the upload limit: these qualities, then downscaling.
UPLOAD_QUALITIES: Final = (90, 80, 70)
UPLOAD_DOWNSCALE: Final = 0.75
UPLOAD_MIN_SIDE: Final = 64

# Everything Pillow raises on a malformed file of an allowed format. struct.error and
# IndexError escape some plugins' header parsers on garbage.
_PILLOW_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_BOMB_ERRORS: Final = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_EXTENSIONS: Final = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class ImageLimits:
    """What an input image may be. Every limit is checked from the header before decoding."""

    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_side: int = 8192
    min_side: int = 64
    max_aspect: float = 8.0  # longest side / shortest side


DEFAULT_LIMITS: Final = ImageLimits()
# The API's own output: sanity limits only (it never sends more than a few 1024² images).
_RESULT_LIMITS: Final = ImageLimits(max_bytes=64 * 2**20, min_side=1, max_aspect=float("inf"))


@dataclass(frozen=True)
class DecodedInput:
    """A member's image, decoded and cleaned: RGB, upright, no metadata."""

    image: Image.Image  # JPEGs may be draft-decoded down toward DRAFT_SIDE
    format: str  # what the bytes were: PNG, JPEG, MPO, WEBP or GIF
    n_bytes: int
    sha256: str  # for logs and de-duplication; never the image itself

    @property
    def size(self) -> Size:
        return self.image.size


@dataclass(frozen=True)
class ResultImage:
    """An image the API returned, proven decodable."""

    data: bytes
    format: str  # one of upstream_api.RESULT_FORMATS
    size: Size

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.format]


# --- sniffing and header checks -------------------------------------------------------------


def sniff(data: bytes) -> str:
    """The Pillow format name for ``data``'s magic bytes, from the allow-list only."""
    if not data:
        raise EmptyImage()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):  # plain JPEG and MPO alike
        return "JPEG"
    if data.startswith(b"RIFF") and data[8:14] == b"WEBPVP":
        return "WEBP"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    raise NotAnImage()


def declared_size(data: bytes, fmt: str) -> Size | None:
    """The width×height a file's header declares, without Pillow; None if it cannot be read."""
    readers: dict[str, Callable[[bytes], Size | None]] = {
        "PNG": _png_size,
        "JPEG": _jpeg_size,
        "WEBP": _webp_size,
        "GIF": _gif_size,
    }
    return readers[fmt](data)


def _png_size(data: bytes) -> Size | None:
    # The IHDR chunk must come first: length(4) "IHDR" width(4) height(4), big-endian.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _gif_size(data: bytes) -> Size | None:
    # The logical screen, grown (as Pillow grows it) to fit the first frame's extent.
    if len(data) < 13:
        return None
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # skip the global colour table
    while pos < len(data) and data[pos] == 0x21:  # extension: introducer, label, sub-blocks
        pos += 2
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        pos += 1
    if pos + 9 <= len(data) and data[pos] == 0x2C:  # image descriptor: left, top, width, height
        left, top, frame_w, frame_h = struct.unpack_from("<HHHH", data, pos + 1)
        return max(width, left + frame_w), max(height, top + frame_h)
    return width, height


def _webp_size(data: bytes) -> Size | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # extended: 24-bit canvas size minus one
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # lossy
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # lossless: 14+14 bits
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but don't.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH: Final = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI


def _jpeg_size(data: bytes) -> Size | None:
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF or data[pos + 1] == 0xFF:
            pos += 1  # junk or fill bytes between segments, tolerated like Pillow does
            continue
        marker = data[pos + 1]
        if marker in _JPEG_NO_LENGTH:
            pos += 2
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
    return None


def check_dimensions(size: Size, limits: ImageLimits) -> None:
    """Refuse a size outside ``limits``; the most useful explanation wins."""
    width, height = size
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(width, height, limits.min_side)
    if max(width, height) > limits.max_aspect * min(width, height):
        raise ExtremeAspectRatio(width, height, limits.max_aspect)
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise TooManyPixels(width, height, limits.max_pixels, limits.max_side)


def _precheck(data: bytes, limits: ImageLimits) -> tuple[str, Size]:
    """Bytes, format and header size: everything refusable before Pillow sees the file."""
    if not data:
        raise EmptyImage()
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(limits.max_bytes)
    fmt = sniff(data)
    size = declared_size(data, fmt)
    if size is None:
        raise TruncatedImage()
    check_dimensions(size, limits)
    return fmt, size


# --- decoding -------------------------------------------------------------------------------


def decode_untrusted(
    data: bytes, limits: ImageLimits = DEFAULT_LIMITS, *, draft_side: int | None = None
) -> Image.Image:
    """Decode a member's file into a fresh RGB image, upright, alpha on white, no metadata.

    Synchronous and CPU-heavy: call it through :func:`run_in_image_thread`. Raises only
    :class:`BadImage` subclasses for anything wrong with the file. ``draft_side`` lets libjpeg
    decode a big JPEG at 1/2, 1/4 or 1/8 scale while keeping both sides at least that long.
    """
    return _decode(data, limits, draft_side)[0]


def _decode(data: bytes, limits: ImageLimits, draft_side: int | None) -> tuple[Image.Image, str]:
    fmt, header_size = _precheck(data, limits)
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            check_dimensions(im.size, limits)
            # MPO (phone camera JPEG with extra views) is a still photo: frame 0 is the photo.
            if im.format != "MPO" and getattr(im, "is_animated", False):
                raise AnimatedImage()
            if draft_side is not None and im.format in ("JPEG", "MPO"):
                im.draft("RGB", (draft_side, draft_side))
            im.load()  # the full decode; truncation raises here (LOAD_TRUNCATED_IMAGES stays off)
            ImageOps.exif_transpose(im, in_place=True)
            return flatten_to_rgb(im), im.format or fmt
    except _BOMB_ERRORS:
        log.warning("decompression bomb refused: %s %d×%d", fmt, *header_size)
        raise TooManyPixels(*header_size, limits.max_pixels, limits.max_side) from None
    except _PILLOW_ERRORS as exc:
        log.info("damaged %s refused: %s", fmt, type(exc).__name__)
        raise TruncatedImage() from None


def flatten_to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → a FRESH RGB image (``info == {}``), transparency composited on white."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _sixteen_bit_to_l(im)
    clean = Image.new("RGB", im.size, WHITE)
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        clean.paste(rgba, mask=rgba)
    else:
        clean.paste(im if im.mode == "RGB" else im.convert("RGB"))
    return clean


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    # From PNG these hold 16-bit samples (0..65535); convert("L") would clip them to white.
    # A 16-bit tRNS colour key is dropped with the info (rare; it would not fit 8 bits).
    wide = im if im.mode in ("I", "F") else im.convert("I")
    grey = wide.point(lambda v: v / 257).convert("L")
    grey.info.clear()
    return grey


def prepare_input(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> DecodedInput:
    """Decode a member's attachment for a job (JPEGs draft-decoded toward :data:`DRAFT_SIDE`)."""
    image, fmt = _decode(data, limits, DRAFT_SIDE)
    digest = hashlib.sha256(data).hexdigest()
    log.info("input image %s, %d bytes → %d×%d, sha256 %s", fmt, len(data), *image.size, digest)
    return DecodedInput(image=image, format=fmt, n_bytes=len(data), sha256=digest)


# --- the request image ----------------------------------------------------------------------


def encode_request_image(img: Image.Image, size: Size, fit: Fit) -> bytes:
    """Resize to exactly ``size`` and encode as JPEG for the API.

    ``cover``: scale to cover ``size`` and centre-crop (img2img, whose output size is fixed).
    ``exact``: plain resize (the caller already kept the aspect ratio, as outpaint presets do).
    """
    if min(size) <= 0 or fit not in ("cover", "exact"):
        raise ValueError(f"invalid target {size} / {fit!r}")
    rgb = img if img.mode == "RGB" else flatten_to_rgb(img)
    box = _cover_box(rgb.size, size) if fit == "cover" else None
    if rgb.size != size or box is not None:
        rgb = rgb.resize(size, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    return _jpeg_bytes(rgb, REQUEST_JPEG_QUALITY)


def _cover_box(source: Size, target: Size) -> tuple[float, float, float, float]:
    """The centred region of ``source`` with ``target``'s aspect ratio."""
    sw, sh = source
    tw, th = target
    if sw * th > tw * sh:  # source is wider: keep full height, crop the sides
        kept = sh * tw / th
        return ((sw - kept) / 2, 0, (sw + kept) / 2, sh)
    kept = sw * th / tw
    return (0, (sh - kept) / 2, sw, (sh + kept) / 2)


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# --- the result side ------------------------------------------------------------------------


def check_result(data: bytes) -> ResultImage:
    """Prove the API's bytes are a complete JPEG/PNG/WebP image; the bytes are kept as they came."""
    try:
        fmt, _ = _precheck(data, _RESULT_LIMITS)
        if fmt not in api.RESULT_FORMATS:
            raise NotAnImage()
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            im.load()
            size = im.size
    except (BadImage, *_BOMB_ERRORS, *_PILLOW_ERRORS) as exc:
        raise UpstreamBadResponse(f"result is not a usable image ({type(exc).__name__})") from None
    return ResultImage(data=data, format=fmt, size=size)


def fit_for_upload(result: ResultImage, limit_bytes: int) -> ResultImage:
    """``result`` untouched if it fits ``limit_bytes``; otherwise a smaller JPEG that does."""
    if len(result.data) <= limit_bytes:
        return result
    with Image.open(io.BytesIO(result.data), formats=[result.format]) as im:
        img = flatten_to_rgb(im)
    for candidate in _smaller_jpegs(img):
        if len(candidate.data) <= limit_bytes:
            log.info(
                "result re-encoded for upload: %d → %d bytes, %d×%d",
                len(result.data),
                len(candidate.data),
                *candidate.size,
            )
            return candidate
    raise ValueError(f"no JPEG of this image fits in {limit_bytes} bytes")


def _smaller_jpegs(img: Image.Image) -> Iterator[ResultImage]:
    """Ever smaller encodings: lower qualities first, then ever smaller sizes."""
    for quality in UPLOAD_QUALITIES:
        yield ResultImage(_jpeg_bytes(img, quality), "JPEG", img.size)
    while min(img.size) * UPLOAD_DOWNSCALE >= UPLOAD_MIN_SIDE:
        smaller = (round(img.width * UPLOAD_DOWNSCALE), round(img.height * UPLOAD_DOWNSCALE))
        img = img.resize(smaller, RESAMPLE, reducing_gap=REDUCING_GAP)
        yield ResultImage(_jpeg_bytes(img, UPLOAD_QUALITIES[-1]), "JPEG", img.size)


# --- off the event loop ---------------------------------------------------------------------


@functools.cache
def _image_executor() -> ThreadPoolExecutor:
    """A small pool of its own, created on first use.

    Not ``asyncio.to_thread``: the default executor also runs aiohttp's DNS lookups, and a
    burst of 40 MP decodes (~120 MB each) must neither queue those behind it nor run dozens
    at once. Pillow releases the GIL in its codecs, so a few threads really run in parallel.
    """
    return ThreadPoolExecutor(
        max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="sdbot-image"
    )


async def run_in_image_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    # Like asyncio.to_thread, carry contextvars (log context) into the worker.
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_image_executor(), call)


async def check_result_async(data: bytes) -> ResultImage:
    return await run_in_image_thread(check_result, data)


async def fit_for_upload_async(result: ResultImage, limit_bytes: int) -> ResultImage:
    return await run_in_image_thread(fit_for_upload, result, limit_bytes)
