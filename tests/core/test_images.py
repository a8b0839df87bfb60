"""The image pipeline against the bad/odd corpus: each case asserts what a member would see."""

from __future__ import annotations

import asyncio
import contextvars
import io
import threading
import warnings
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.core import images
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
from bot.core.images import (
    DEFAULT_LIMITS,
    DRAFT_SIDE,
    ImageLimits,
    ResultImage,
    check_result,
    decode_untrusted,
    encode_request_image,
    fit_for_upload,
    flatten_to_rgb,
    prepare_input,
    sniff,
)
from tests import imagecorpus as corpus

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
CYAN = (0, 255, 255)

Color = tuple[int, ...]


def assert_close(actual: object, expected: Color, tolerance: int = 8) -> None:
    assert isinstance(actual, tuple)
    assert len(actual) == len(expected)
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (
        f"{actual} is not close to {expected}"
    )


def centre(img: Image.Image) -> object:
    return img.getpixel((img.width // 2, img.height // 2))


def assert_clean_rgb(img: Image.Image) -> None:
    assert img.mode == "RGB"
    assert img.info == {}
    assert len(img.getexif()) == 0


# --- sniffing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (corpus.png, "PNG"),
        (corpus.jpeg, "JPEG"),
        (corpus.mpo, "JPEG"),
        (corpus.still_webp, "WEBP"),
        (corpus.still_gif, "GIF"),
    ],
)
def test_sniff_allowed_formats(make: Callable[[], bytes], expected: str) -> None:
    assert sniff(make()) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"hello, I am text in a file named cat.png\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        corpus.tiff(),
        corpus.bmp(),
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
    ],
    ids=["text", "svg", "tiff", "bmp", "riff-wave"],
)
def test_sniff_refuses_everything_else(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        sniff(data)


def test_sniff_empty() -> None:
    with pytest.raises(EmptyImage):
        sniff(b"")


# --- refusals a member sees -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyImage),
        (b"just some text, saved as photo.png", NotAnImage),
        (corpus.tiff(), NotAnImage),
        (corpus.bmp(), NotAnImage),
        (b"\x89PNG\r\n\x1a\n", TruncatedImage),  # the signature and nothing else
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, TruncatedImage),
        (corpus.truncated(corpus.png((400, 300), "red"), 0.5), TruncatedImage),
        (corpus.truncated(corpus.noisy_jpeg(), 0.5), TruncatedImage),
        (corpus.truncated(corpus.noisy_jpeg(), 0.9), TruncatedImage),
        (corpus.animated_gif(), AnimatedImage),
        (corpus.animated_webp(), AnimatedImage),
        (corpus.apng(), AnimatedImage),
        (corpus.png((1, 1)), ImageTooSmall),
        (corpus.png((63, 500)), ImageTooSmall),
        (corpus.png_declaring(0, 100), ImageTooSmall),
        (corpus.png((10000, 100)), ExtremeAspectRatio),
        (corpus.png_declaring(30000, 30000), TooManyPixels),
        (corpus.png_declaring(10000, 10000), TooManyPixels),
        (corpus.png_declaring(8193, 4000), TooManyPixels),
        (corpus.jpeg_declaring(60000, 60000), TooManyPixels),
        (corpus.webp_declaring(16000, 16000), TooManyPixels),
        (corpus.gif_frame_declaring(30000, 30000), TooManyPixels),
    ],
    ids=[
        "empty",
        "text-named-png",
        "tiff",
        "bmp",
        "png-signature-only",
        "png-signature-then-zeros",
        "png-cut-50",
        "jpeg-cut-50",
        "jpeg-cut-90",
        "animated-gif",
        "animated-webp",
        "apng",
        "1x1",
        "63-wide",
        "0-wide-header",
        "10000x100-strip",
        "png-header-30000",
        "png-header-10000",
        "png-side-8193",
        "jpeg-header-60000",
        "webp-header-16000",
        "gif-frame-30000",
    ],
)
def test_refused(data: bytes, error: type[BadImage]) -> None:
    with pytest.raises(error) as caught:
        decode_untrusted(data)
    assert type(caught.value) is error
    assert caught.value.user_message  # every refusal tells the member something


def test_messages_name_the_problem() -> None:
    with pytest.raises(TooManyPixels) as bomb:
        decode_untrusted(corpus.png_declaring(30000, 30000))
    assert bomb.value.user_message == (
        "That image is 30000×30000; the limit is 40 megapixels and 8192 pixels on a side."
    )
    with pytest.raises(ExtremeAspectRatio) as strip:
        decode_untrusted(corpus.png((10000, 100)))
    assert "10000×100" in strip.value.user_message
    assert "8 times" in strip.value.user_message
    with pytest.raises(ImageTooSmall) as tiny:
        decode_untrusted(corpus.png((1, 1)))
    assert "1×1" in tiny.value.user_message and "64" in tiny.value.user_message
    with pytest.raises(ImageTooLarge) as large:
        decode_untrusted(b"\x89PNG" + bytes(2 * 2**20), ImageLimits(max_bytes=2 * 2**20))
    assert "2 MiB" in large.value.user_message


def test_byte_cap_comes_before_anything_else() -> None:
    data = corpus.png()
    with pytest.raises(ImageTooLarge):
        decode_untrusted(data, ImageLimits(max_bytes=len(data) - 1))
    assert decode_untrusted(data, ImageLimits(max_bytes=len(data))).size == (96, 64)


@pytest.mark.parametrize(
    "data",
    [
        corpus.png_declaring(30000, 30000),
        corpus.jpeg_declaring(60000, 60000),
        corpus.webp_declaring(16000, 16000),
        corpus.gif_frame_declaring(30000, 30000),
    ],
    ids=["png", "jpeg", "webp", "gif"],
)
def test_header_bombs_refused_before_pillow_opens_them(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open must not be reached")

    monkeypatch.setattr(Image, "open", never)
    with pytest.raises(TooManyPixels):
        decode_untrusted(data)


def test_pillow_bomb_error_maps_to_too_many_pixels() -> None:
    # Limits above Pillow's own guard: its DecompressionBombError (> 179 MP) is the refusal.
    lax = ImageLimits(max_pixels=10**12, max_side=10**6)
    with pytest.raises(TooManyPixels) as caught:
        decode_untrusted(corpus.png_declaring(30000, 30000), lax)
    assert "30000×30000" in caught.value.user_message


def test_pillow_bomb_warning_as_error_maps_to_too_many_pixels() -> None:
    lax = ImageLimits(max_pixels=10**12, max_side=10**6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(TooManyPixels):
            decode_untrusted(corpus.png_declaring(10000, 10000), lax)


def test_global_pillow_state_untouched() -> None:
    before = Image.MAX_IMAGE_PIXELS
    decode_untrusted(corpus.png())
    with pytest.raises(TooManyPixels):
        decode_untrusted(corpus.png_declaring(30000, 30000))
    assert before == Image.MAX_IMAGE_PIXELS
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- accepted inputs, and what they become --------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        corpus.still_gif(),
        corpus.still_webp(),
        corpus.still_webp(lossless=True),
        corpus.png((64, 64)),
        corpus.jpeg((64, 64), quality=95),
        corpus.mpo(),
    ],
    ids=["still-gif", "webp", "webp-lossless", "png", "jpeg", "mpo"],
)
def test_still_images_accepted(data: bytes) -> None:
    img = decode_untrusted(data)
    assert img.size == (64, 64)
    assert_clean_rgb(img)
    assert_close(centre(img), corpus.RED)


def test_mpo_uses_first_frame() -> None:
    decoded = prepare_input(corpus.mpo())
    assert decoded.format == "MPO"
    assert_close(centre(decoded.image), corpus.RED)  # frame 1 is blue


def test_cmyk_jpeg_colour() -> None:
    img = decode_untrusted(corpus.cmyk_jpeg((255, 0, 0, 0)))  # pure cyan ink
    assert_close(centre(img), CYAN)


def test_16_bit_png_scaled_not_clipped() -> None:
    img = decode_untrusted(corpus.grey16_gradient_png())
    for x in (0, 1, 64, 128, 200, 254, 255):
        assert_close(img.getpixel((x, 10)), (x, x, x), tolerance=1)


def test_palette_transparency_becomes_white() -> None:
    img = decode_untrusted(corpus.palette_with_transparency())
    assert img.getpixel((8, 8)) == corpus.RED
    assert img.getpixel((56, 8)) == WHITE


def test_la_alpha_flattened_on_white() -> None:
    img = decode_untrusted(corpus.la_png())
    assert img.getpixel((8, 8)) == BLACK
    assert img.getpixel((56, 8)) == WHITE


def test_rgba_fully_transparent_is_white() -> None:
    assert centre(decode_untrusted(corpus.transparent_rgba_png())) == WHITE


# EXIF orientation → what the viewer does to the stored pixels (EXIF 2.3, tag 0x0112).
_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_applied(orientation: int) -> None:
    expected = corpus.quadrants().transpose(_ORIENTATION_FIX[orientation])
    img = decode_untrusted(corpus.oriented_jpeg(orientation))
    assert img.size == expected.size
    assert_clean_rgb(img)
    w, h = img.size
    for x, y in (
        (w // 4, h // 4),
        (3 * w // 4, h // 4),
        (w // 4, 3 * h // 4),
        (3 * w // 4, 3 * h // 4),
    ):
        assert_close(img.getpixel((x, y)), expected.getpixel((x, y)), tolerance=12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data", [corpus.with_metadata_jpeg(), corpus.with_text_png(), corpus.oriented_jpeg(6)]
)
def test_output_carries_no_metadata(data: bytes) -> None:
    img = decode_untrusted(data)
    assert_clean_rgb(img)
    reencoded = Image.open(io.BytesIO(encode_request_image(img, (64, 64), "cover")))
    assert set(reencoded.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}
    assert len(reencoded.getexif()) == 0


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("1", 1, WHITE),
        ("L", 128, (128, 128, 128)),
        ("P", 0, BLACK),
        ("RGB", (1, 2, 3), (1, 2, 3)),
        ("RGBA", (10, 20, 30, 0), WHITE),
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("LA", (0, 0), WHITE),
        ("PA", (0, 0), WHITE),
        ("CMYK", (0, 0, 0, 0), WHITE),
        ("I;16", 65535, WHITE),
        ("I;16", 32896, (128, 128, 128)),
        ("I", 32896, (128, 128, 128)),
        ("F", 32896.0, (128, 128, 128)),
        ("YCbCr", (255, 128, 128), WHITE),
    ],
)
def test_every_mode_flattens_to_clean_rgb(mode: str, color: object, expected: Color) -> None:
    source = Image.new(mode, (8, 8), color)  # type: ignore[arg-type]
    source.info["exif"] = b"Exif\x00\x00junk"
    img = flatten_to_rgb(source)
    assert_clean_rgb(img)
    assert_close(centre(img), expected, tolerance=2)


def test_big_jpeg_is_draft_decoded_but_stays_above_the_api_size() -> None:
    data = corpus.jpeg((4096, 3072))
    full = decode_untrusted(data)
    drafted = prepare_input(data)
    assert full.size == (4096, 3072)
    assert drafted.image.size == (2048, 1536)  # 1/2 scale: the smallest still ≥ 1024 on a side
    assert min(drafted.size) >= DRAFT_SIDE
    assert drafted.format == "JPEG"
    assert drafted.n_bytes == len(data)
    assert len(drafted.sha256) == 64


def test_default_limits_are_the_documented_ones() -> None:
    assert (
        ImageLimits(
            max_bytes=20 * 2**20, max_pixels=40_000_000, max_side=8192, min_side=64, max_aspect=8.0
        )
        == DEFAULT_LIMITS
    )


# --- property: nothing but BadImage escapes -------------------------------------------------

_MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a"]
_VALID = [
    corpus.png((64, 64)),
    corpus.jpeg((64, 64)),
    corpus.still_webp(),
    corpus.still_webp(lossless=True),
    corpus.still_gif(),
    corpus.mpo(),
    corpus.apng(),
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


_hostile = st.one_of(
    st.binary(max_size=512),
    st.builds(bytes.__add__, st.sampled_from(_MAGICS), st.binary(max_size=512)),
    _mutated(),
)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on the mangled files
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile)
def test_hostile_bytes_raise_only_bad_image(data: bytes) -> None:
    try:
        img = decode_untrusted(data)
    except BadImage as exc:
        assert exc.user_message
    else:
        assert_clean_rgb(img)


# --- the request image ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(512, 512), (768, 512), (512, 768), (1024, 1024), (100, 37)])
@pytest.mark.parametrize("fit", ["cover", "exact"])
@pytest.mark.parametrize("source", [(300, 100), (100, 300), (2000, 2000), (64, 64)])
def test_request_image_has_exactly_the_requested_size(
    size: tuple[int, int], fit: images.Fit, source: tuple[int, int]
) -> None:
    data = encode_request_image(corpus.stripes(source), size, fit)
    assert sniff(data) == "JPEG"
    with Image.open(io.BytesIO(data)) as out:
        assert out.size == size


def _decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_cover_centre_crops_a_wide_image() -> None:
    stripes = corpus.stripes((900, 300))  # red | green | blue, 300 px each
    square = _decoded(encode_request_image(stripes, (512, 512), "cover"))
    for x in (5, 256, 506):  # the middle 300×300 is all green
        assert_close(square.getpixel((x, 256)), corpus.GREEN, tolerance=12)
    wide = _decoded(encode_request_image(stripes, (768, 512), "cover"))  # keeps x 225..675
    assert_close(wide.getpixel((20, 256)), corpus.RED, tolerance=12)
    assert_close(wide.getpixel((384, 256)), corpus.GREEN, tolerance=12)
    assert_close(wide.getpixel((748, 256)), corpus.BLUE, tolerance=12)


def test_cover_centre_crops_a_tall_image() -> None:
    bands = corpus.stripes((900, 300)).transpose(Image.Transpose.ROTATE_270)  # red on top
    square = _decoded(encode_request_image(bands, (512, 512), "cover"))
    for y in (5, 256, 506):
        assert_close(square.getpixel((256, y)), corpus.GREEN, tolerance=12)


def test_exact_keeps_everything() -> None:
    out = _decoded(encode_request_image(corpus.stripes((900, 300)), (768, 256), "exact"))
    assert_close(out.getpixel((20, 128)), corpus.RED, tolerance=12)
    assert_close(out.getpixel((384, 128)), corpus.GREEN, tolerance=12)
    assert_close(out.getpixel((748, 128)), corpus.BLUE, tolerance=12)


def test_request_image_flattens_non_rgb_input() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    assert_close(centre(_decoded(encode_request_image(rgba, (64, 64), "exact"))), WHITE, 2)


@pytest.mark.parametrize(
    ("size", "fit"), [((0, 512), "cover"), ((512, -1), "exact"), ((512, 512), "stretch")]
)
def test_request_image_refuses_nonsense(size: tuple[int, int], fit: images.Fit) -> None:
    with pytest.raises(ValueError):
        encode_request_image(corpus.quadrants(), size, fit)


# --- the result side ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt", "extension"),
    [
        (corpus.jpeg((512, 512)), "JPEG", "jpg"),
        (corpus.png((512, 512)), "PNG", "png"),
        (corpus.encode(corpus.solid((512, 512)), "WEBP"), "WEBP", "webp"),
    ],
)
def test_check_result_accepts_api_formats(data: bytes, fmt: str, extension: str) -> None:
    result = check_result(data)
    assert result.data is data
    assert (result.format, result.extension, result.size) == (fmt, extension, (512, 512))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'{"error": "something"}',
        b"<html>502 Bad Gateway</html>",
        corpus.truncated(corpus.noisy_jpeg(), 0.5),
        corpus.truncated(corpus.noisy_jpeg(), 0.9),
        corpus.still_gif(),
        corpus.png_declaring(30000, 30000),
    ],
    ids=["empty", "json", "html", "jpeg-cut-50", "jpeg-cut-90", "gif", "bomb"],
)
def test_check_result_refuses_broken_bytes(data: bytes) -> None:
    with pytest.raises(UpstreamBadResponse) as caught:
        check_result(data)
    assert caught.value.maybe_billed  # the caller must not retry it blindly
    assert caught.value.detail.startswith("result is not a usable image")


def test_fit_for_upload_keeps_bytes_that_fit() -> None:
    result = check_result(corpus.png((512, 512)))
    assert fit_for_upload(result, len(result.data)) is result


def test_fit_for_upload_reencodes_when_too_big() -> None:
    noise = Image.effect_noise((512, 512), 80).convert("RGB")
    result = check_result(corpus.encode(noise, "PNG"))
    limit = len(result.data) // 4
    smaller = fit_for_upload(result, limit)
    assert len(smaller.data) <= limit
    assert smaller.format == "JPEG" and smaller.extension == "jpg"
    assert check_result(smaller.data).size == smaller.size == (512, 512)


def test_fit_for_upload_downscales_when_quality_is_not_enough() -> None:
    noise = Image.effect_noise((512, 512), 80).convert("RGB")
    result = check_result(corpus.encode(noise, "PNG"))
    smaller = fit_for_upload(result, 20_000)
    assert len(smaller.data) <= 20_000
    assert smaller.size[0] < 512
    assert smaller.size[0] / smaller.size[1] == pytest.approx(1.0, abs=0.02)


def test_fit_for_upload_flattens_alpha() -> None:
    rgba = Image.effect_noise((256, 256), 80).convert("RGBA")
    rgba.putalpha(0)
    result = check_result(corpus.encode(rgba, "PNG"))
    smaller = fit_for_upload(result, len(result.data) - 1)
    assert_close(centre(_decoded(smaller.data)), WHITE, 4)


def test_fit_for_upload_gives_up_on_an_impossible_limit() -> None:
    result = check_result(corpus.png((512, 512)))
    with pytest.raises(ValueError):
        fit_for_upload(result, 10)


def test_result_image_extension_per_format() -> None:
    assert ResultImage(b"", "PNG", (1, 1)).extension == "png"


# --- off the event loop ---------------------------------------------------------------------


async def test_async_wrappers_run_in_the_image_pool() -> None:
    decoded = await images.run_in_image_thread(images.prepare_input, corpus.png((96, 64)))
    assert decoded.size == (96, 64)
    data = await images.run_in_image_thread(
        images.encode_request_image, decoded.image, (768, 512), "cover"
    )
    assert sniff(data) == "JPEG"
    result = await images.check_result_async(data)
    assert await images.fit_for_upload_async(result, len(data)) is result
    name = await images.run_in_image_thread(lambda: threading.current_thread().name)
    assert name.startswith("sdbot-image")
    assert name != threading.current_thread().name


async def test_concurrent_decodes_do_not_interfere() -> None:
    cases: list[tuple[bytes, type[BadImage] | None]] = [
        (corpus.png((96, 64)), None),
        (corpus.png_declaring(30000, 30000), TooManyPixels),
        (corpus.mpo(), None),
        (corpus.truncated(corpus.noisy_jpeg(), 0.5), TruncatedImage),
        (corpus.animated_gif(), AnimatedImage),
        (corpus.cmyk_jpeg(), None),
    ] * 4
    outcomes = await asyncio.gather(
        *(images.run_in_image_thread(images.prepare_input, data) for data, _ in cases),
        return_exceptions=True,
    )
    for (_, error), outcome in zip(cases, outcomes, strict=True):
        if error is None:
            assert isinstance(outcome, images.DecodedInput)
        else:
            assert type(outcome) is error


async def test_async_wrappers_carry_context_and_errors() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("job")
    var.set("job-42")
    assert await images.run_in_image_thread(var.get) == "job-42"
    with pytest.raises(NotAnImage):
        await images.run_in_image_thread(images.prepare_input, b"not an image at all")
