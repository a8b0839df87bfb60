"""Every option's boundaries, the defaults a member relies on, and the request bodies."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import upstream_api as api
from bot.core.errors import InvalidParameter
from bot.core.params import (
    JobKind,
    clean_prompt,
    closest_size,
    img2img_params,
    outpaint_params,
    params_from_dict,
)

SQUARE = (800, 800)


def i2i(**options: object):  # type: ignore[no-untyped-def]
    options.setdefault("prompt", "a lighthouse at dusk")
    options.setdefault("input_size", SQUARE)
    return img2img_params(**options)  # type: ignore[arg-type]


def outp(**options: object):  # type: ignore[no-untyped-def]
    options.setdefault("prompt", "a wide valley")
    options.setdefault("input_size", SQUARE)
    return outpaint_params(**options)  # type: ignore[arg-type]


def test_img2img_defaults_are_the_products() -> None:
    p = i2i()
    assert (p.strength, p.steps, p.guidance, p.scheduler, p.samples) == (0.75, 25, 7.5, "DDIM", 1)
    assert p.kind is JobKind.IMG2IMG
    assert 0 <= p.seed <= api.SEED_RANGE.high


def test_outpaint_defaults() -> None:
    p = outp()
    assert (p.strength, p.steps, p.guidance, p.mask_expand) == (1.0, 25, 7.5, 8)
    assert p.direction == "zoom_out"
    assert p.canvas in api.OUTPAINT_CANVASES


@pytest.mark.parametrize(
    ("option", "low", "high", "below", "above"),
    [
        ("strength", 0.1, 1.0, 0.09, 1.01),
        ("steps", 20, 100, 19, 101),
        ("guidance", 0.1, 25.0, 0.0, 25.1),
        ("samples", 1, 4, 0, 5),
        ("seed", 0, 2**32 - 1, -2, 2**32),
    ],
)
def test_img2img_boundaries(
    option: str, low: float, high: float, below: float, above: float
) -> None:
    i2i(**{option: low})
    i2i(**{option: high})
    for bad in (below, above):
        with pytest.raises(InvalidParameter) as caught:
            i2i(**{option: bad})
        error = caught.value
        assert error.option == option
        assert str(bad) in error.user_message
        assert "to" in error.allowed  # names the allowed range


@pytest.mark.parametrize(
    ("option", "low", "high", "below", "above"),
    [
        ("steps", 25, 100, 24, 101),
        ("guidance", 0.1, 25.0, 0.05, 26),
        ("strength", 0.1, 1.0, 0.0, 1.5),
        ("mask_expand", 0, 256, -1, 257),
    ],
)
def test_outpaint_boundaries(
    option: str, low: float, high: float, below: float, above: float
) -> None:
    outp(**{option: low})
    outp(**{option: high})
    for bad in (below, above):
        with pytest.raises(InvalidParameter) as caught:
            outp(**{option: bad})
        assert caught.value.option == option


@pytest.mark.parametrize(
    ("option", "low", "high", "below", "above"),
    [
        ("offset_x", 0, 1016, -1, 1025),
        ("offset_y", 0, 1016, -1, 1025),
        ("scale", 0.1, 10, 0.0, 10.5),
    ],
)
def test_custom_outpaint_boundaries(
    option: str, low: float, high: float, below: float, above: float
) -> None:
    outp(direction="custom", canvas="1024x1024", **{option: low})
    outp(direction="custom", canvas="1024x1024", **{option: high})
    for bad in (below, above):
        with pytest.raises(InvalidParameter) as caught:
            outp(direction="custom", canvas="1024x1024", **{option: bad})
        assert caught.value.option == option


def test_offset_must_be_on_the_canvas() -> None:
    with pytest.raises(InvalidParameter, match="offset_x"):
        outp(direction="custom", canvas="768x768", offset_x=800)


def test_custom_only_options_refused_with_a_preset() -> None:
    with pytest.raises(InvalidParameter, match="only used with direction `custom`"):
        outp(direction="left", offset_x=10)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "0.5"])
def test_non_numbers_refused(value: object) -> None:
    with pytest.raises(InvalidParameter):
        i2i(strength=value)


def test_integers_accept_whole_floats_only() -> None:
    assert i2i(steps=30.0).steps == 30
    with pytest.raises(InvalidParameter, match="whole number"):
        i2i(steps=30.5)


def test_scheduler_choices() -> None:
    for name in api.SCHEDULERS:
        assert i2i(scheduler=name).scheduler == name
    with pytest.raises(InvalidParameter, match="one of DDIM"):
        i2i(scheduler="ddim; drop table")


def test_size_choices_and_default_follows_aspect() -> None:
    assert i2i(size="768x512").size == (768, 512)
    assert i2i(size=(512, 768)).size == (512, 768)
    with pytest.raises(InvalidParameter, match="512x512"):
        i2i(size="1024x1024")
    with pytest.raises(InvalidParameter):
        i2i(size="big")
    assert i2i(input_size=(4000, 3000)).size == (768, 512)
    assert i2i(input_size=(1080, 1920)).size == (512, 768)
    assert i2i(input_size=(1000, 1000)).size == (512, 512)  # tie: the smaller, cheaper size


def test_closest_size_is_by_aspect_ratio() -> None:
    assert closest_size(3, 2, api.IMG2IMG_SIZES) == (768, 512)
    assert closest_size(100, 1, api.IMG2IMG_SIZES) == (768, 512)


def test_steps_times_strength_must_run_a_step() -> None:
    # Within the documented ranges the product is always ≥ 2, so check the rule itself.
    from bot.core.params import _check_steps_run

    _check_steps_run(20, 0.05)
    with pytest.raises(InvalidParameter, match=r"steps × strength ≥ 1"):
        _check_steps_run(5, 0.1)


def test_prompt_is_cleaned_and_capped() -> None:
    assert clean_prompt("prompt", "a\u200bb\u202e c\x00\nd", required=True) == "ab c d"
    assert clean_prompt("prompt", "ｆｕｌｌ", required=True) == "full"  # NFKC
    with pytest.raises(InvalidParameter, match="non-empty"):
        i2i(prompt="\u200b \n")
    with pytest.raises(InvalidParameter, match="at most 2000"):
        i2i(prompt="x" * 6000)
    assert i2i(negative_prompt=None).negative_prompt == ""


@given(st.text(max_size=300))
def test_clean_prompt_never_keeps_control_characters(text: str) -> None:
    try:
        cleaned = clean_prompt("prompt", text, required=False)
    except InvalidParameter:
        return
    assert all(ch.isprintable() or ch == " " for ch in cleaned)
    assert "\u200b" not in cleaned


def test_seed_random_when_omitted_and_kept_when_given() -> None:
    seeds = {i2i().seed for _ in range(20)}
    assert len(seeds) > 1
    assert i2i(seed=42).seed == 42
    assert i2i(seed=-1).seed >= 0  # -1 means random; the bot still picks and shows one


def test_img2img_payload_matches_the_api() -> None:
    p = i2i(negative_prompt="blurry", samples=2, seed=7, size="512x768")
    body = p.payload("QUJD")
    assert body == {
        "image": "QUJD",
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "samples": 2,
        "scheduler": "DDIM",
        "num_inference_steps": 25,
        "guidance_scale": 7.5,
        "strength": 0.75,
        "seed": 7,
        "img_width": 512,
        "img_height": 768,
        "base64": True,
    }
    assert i2i().payload("x")["base64"] is False


def test_outpaint_payload_matches_the_api() -> None:
    p = outp(direction="custom", canvas="1024x768", offset_x=64, offset_y=32, scale=0.5, seed=3)
    body = p.payload("QUJD")
    assert {k: body[k] for k in ("img_width", "img_height", "offset_x", "offset_y", "scale")} == {
        "img_width": 1024,
        "img_height": 768,
        "offset_x": 64,
        "offset_y": 32,
        "scale": 0.5,
    }
    assert body["mask_expand"] == 8 and body["seed"] == 3 and "negative_prompt" not in body


def test_params_round_trip_through_a_dict() -> None:
    for p in (i2i(seed=1), outp(seed=2, direction="up")):
        assert params_from_dict(p.to_dict()) == p


def test_bad_direction_lists_the_choices() -> None:
    with pytest.raises(InvalidParameter, match="zoom_out, left, right, up, down, custom"):
        outp(direction="sideways")


def test_aspect_log_is_symmetric() -> None:
    # A 2:1 and a 1:2 input land on mirrored sizes.
    wide, tall = i2i(input_size=(2000, 1000)).size, i2i(input_size=(1000, 2000)).size
    assert wide == tall[::-1]
    assert math.isclose(wide[0] / wide[1], 1.5)
