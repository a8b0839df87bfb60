"""Bad and odd image files, made on the fly with Pillow (nothing binary is committed).

Every function returns the bytes a member could upload. Images are small so the whole corpus
builds in milliseconds; the "huge" ones only DECLARE a huge size in their header.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image, ImageCms

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
YELLOW = (255, 255, 0)

ORIENTATION_TAG = 0x0112


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def solid(size: tuple[int, int] = (96, 64), color: object = RED, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, color)  # type: ignore[arg-type]


def png(size: tuple[int, int] = (96, 64), color: object = RED, mode: str = "RGB") -> bytes:
    return encode(solid(size, color, mode), "PNG")


def jpeg(size: tuple[int, int] = (96, 64), color: object = RED, **params: Any) -> bytes:
    return encode(solid(size, color), "JPEG", **params)


def noisy_jpeg(size: tuple[int, int] = (256, 256)) -> bytes:
    """A JPEG with real entropy, so cutting it anywhere loses image data."""
    return encode(Image.effect_noise(size, 64).convert("RGB"), "JPEG", quality=90)


def quadrants(size: tuple[int, int] = (160, 96)) -> Image.Image:
    """Four colours (red top-left, green top-right, blue bottom-left, yellow bottom-right)."""
    w, h = size
    img = Image.new("RGB", size)
    for color, box in (
        (RED, (0, 0, w // 2, h // 2)),
        (GREEN, (w // 2, 0, w, h // 2)),
        (BLUE, (0, h // 2, w // 2, h)),
        (YELLOW, (w // 2, h // 2, w, h)),
    ):
        img.paste(color, box)
    return img


def stripes(size: tuple[int, int] = (300, 100)) -> Image.Image:
    """Three vertical bands: red left third, green centre third, blue right third."""
    w, h = size
    img = Image.new("RGB", size, GREEN)
    img.paste(RED, (0, 0, w // 3, h))
    img.paste(BLUE, (2 * w // 3, 0, w, h))
    return img


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A valid signature, an IHDR declaring width×height (correct CRC) and a few bytes of IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to declare width×height."""
    data = bytearray(jpeg((16, 16)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP whose canvas is patched to width×height."""
    data = bytearray(animated_webp())
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def gif_frame_declaring(width: int, height: int) -> bytes:
    """A 64×64 GIF whose first frame claims width×height (Pillow grows the canvas to fit)."""
    screen = struct.pack("<HHBBB", 64, 64, 0x80, 0, 0) + bytes(6)  # 2-colour global table
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + frame + b"\x02\x02\x44\x01\x00;"


def _two_frames(size: tuple[int, int] = (64, 64)) -> tuple[Image.Image, Image.Image]:
    return solid(size, RED), solid(size, BLUE)


def animated_gif() -> bytes:
    first, second = _two_frames()
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def still_gif() -> bytes:
    return encode(solid((64, 64), RED), "GIF")


def animated_webp() -> bytes:
    first, second = _two_frames()
    return encode(first, "WEBP", save_all=True, append_images=[second], duration=100)


def still_webp(lossless: bool = False) -> bytes:
    return encode(solid((64, 64), RED), "WEBP", lossless=lossless)


def apng() -> bytes:
    first, second = _two_frames()
    return encode(first, "PNG", save_all=True, append_images=[second], duration=100)


def mpo() -> bytes:
    """A phone-style multi-picture JPEG: red main image, blue second view."""
    first, second = _two_frames()
    return encode(first, "MPO", save_all=True, append_images=[second])


def cmyk_jpeg(cmyk: tuple[int, int, int, int] = (255, 0, 0, 0)) -> bytes:
    return encode(Image.new("CMYK", (64, 64), cmyk), "JPEG", quality=95)


def grey16_gradient_png() -> bytes:
    """A 256×64 16-bit grey PNG: column x holds x × 257 (the 16-bit twin of grey x)."""
    img = Image.new("I;16", (256, 64))
    img.putdata([x * 257 for x in range(256)] * 64)
    return encode(img, "PNG")


def palette_with_transparency() -> bytes:
    """A P-mode PNG: left half red, right half palette index 1, marked transparent."""
    img = Image.new("P", (64, 64), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (32, 0, 64, 64))
    return encode(img, "PNG", transparency=1)


def la_png() -> bytes:
    """LA: left half opaque black, right half fully transparent black."""
    img = Image.new("LA", (64, 64), (0, 255))
    img.paste((0, 0), (32, 0, 64, 64))
    return encode(img, "PNG")


def transparent_rgba_png() -> bytes:
    return png((64, 64), (10, 20, 30, 0), mode="RGBA")


def oriented_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encode(quadrants(), "JPEG", quality=95, exif=exif)


def with_metadata_jpeg() -> bytes:
    """EXIF (camera and GPS-ish tags), an ICC profile and a comment."""
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0131] = "secret-software"  # Software
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(solid((96, 64)), "JPEG", exif=exif, icc_profile=icc, comment=b"hello")


def with_text_png() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "personal data")
    return encode(solid((96, 64)), "PNG", pnginfo=info)


def tiff() -> bytes:
    return encode(solid(), "TIFF")


def bmp() -> bytes:
    return encode(solid(), "BMP")
