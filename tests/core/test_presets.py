"""Outpaint presets land on an allowed canvas with the original where a member expects it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import upstream_api as api
from bot.core.presets import ZOOM_OUT_FACTOR, Direction, place

sizes = st.tuples(st.integers(64, 8192), st.integers(64, 8192)).filter(
    lambda s: max(s) / min(s) <= 8
)


@given(sizes, st.sampled_from([d for d in Direction if d is not Direction.CUSTOM]))
def test_every_preset_fits_the_canvas_on_the_grid(size: tuple[int, int], d: Direction) -> None:
    p = place(size, d)
    cw, ch = p.canvas
    w, h = p.input_size
    assert p.canvas in api.OUTPAINT_CANVASES
    assert all(v % 8 == 0 for v in (w, h, p.offset_x, p.offset_y))
    assert p.offset_x >= 0 and p.offset_x + w <= cw
    assert p.offset_y >= 0 and p.offset_y + h <= ch
    assert p.scale == api.OUTPAINT_PRESET_SCALE
    # The aspect ratio survives (within the 8-pixel rounding).
    assert abs(w / h - size[0] / size[1]) <= 8 / min(w, h) * (size[0] / size[1] + 1)


def test_zoom_out_centres_the_original_at_half_size() -> None:
    p = place((1000, 1000), Direction.ZOOM_OUT)
    assert p.canvas == (1024, 1024)
    assert p.input_size == (512, 512)
    assert (p.offset_x, p.offset_y) == (256, 256)  # the API docs' own example
    assert p.input_size[0] * ZOOM_OUT_FACTOR == p.canvas[0]


def test_zoom_out_picks_the_canvas_closest_in_shape() -> None:
    assert place((1600, 1200), Direction.ZOOM_OUT).canvas == (1024, 768)
    assert place((1200, 1600), Direction.ZOOM_OUT).canvas == (768, 1024)


@pytest.mark.parametrize(
    ("direction", "edge"),
    [
        (Direction.LEFT, "right"),
        (Direction.RIGHT, "left"),
        (Direction.UP, "bottom"),
        (Direction.DOWN, "top"),
    ],
)
def test_extend_keeps_the_original_on_the_opposite_edge(direction: Direction, edge: str) -> None:
    p = place((800, 800), direction)
    cw, ch = p.canvas
    w, h = p.input_size
    touches = {
        "left": p.offset_x == 0,
        "right": p.offset_x + w == cw,
        "top": p.offset_y == 0,
        "bottom": p.offset_y + h == ch,
    }
    assert touches[edge]
    horizontal = direction in (Direction.LEFT, Direction.RIGHT)
    new_area = (cw - w) / cw if horizontal else (ch - h) / ch
    assert new_area >= 0.25
    assert (cw > ch) if horizontal else (ch > cw)


def test_a_given_canvas_is_used() -> None:
    assert place((800, 800), Direction.LEFT, canvas=(768, 768)).canvas == (768, 768)


def test_custom_passes_offsets_and_scale_through() -> None:
    p = place(
        (400, 200), Direction.CUSTOM, canvas=(1024, 1024), offset_x=16, offset_y=24, scale=0.5
    )
    assert (p.offset_x, p.offset_y, p.scale) == (16, 24, 0.5)
    assert p.input_size == (1024, 512)
