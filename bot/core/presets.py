"""Outpaint presets: where the original goes on the canvas, so members never think in pixels.

A preset picks an allowed canvas, the size the original is resized to, and its top-left
offset. Every number is a multiple of 8 (SD1.5 works on 8-pixel latents).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from bot.core import upstream_api as api
from bot.core.errors import InvalidParameter

Size = tuple[int, int]

ZOOM_OUT_FACTOR = 2.0  # the original takes half the canvas in each direction
EXTEND_MIN_FRACTION = 0.25  # "extend" adds at least a quarter of the canvas on that side
_GRID = 8


class Direction(enum.StrEnum):
    ZOOM_OUT = "zoom_out"
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"
    CUSTOM = "custom"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Direction.ZOOM_OUT: "Zoom out on all sides",
    Direction.LEFT: "Extend left",
    Direction.RIGHT: "Extend right",
    Direction.UP: "Extend up",
    Direction.DOWN: "Extend down",
    Direction.CUSTOM: "Custom (offset_x, offset_y, scale)",
}


@dataclass(frozen=True)
class Placement:
    canvas: Size
    offset_x: int
    offset_y: int
    input_size: Size  # the size the input image is resized to before it is sent
    scale: float


def _floor8(x: float) -> int:
    return max(_GRID, int(x) // _GRID * _GRID)


def _fit(size: Size, box: tuple[float, float]) -> Size:
    """The largest size with ``size``'s aspect ratio that fits in ``box``, on the 8-px grid."""
    factor = min(box[0] / size[0], box[1] / size[1])
    return _floor8(size[0] * factor), _floor8(size[1] * factor)


def _default_canvas(input_size: Size, direction: Direction) -> Size:
    canvases = api.OUTPAINT_CANVASES
    if direction in (Direction.LEFT, Direction.RIGHT):
        return max(canvases, key=lambda c: (c[0] / c[1], c[0] * c[1]))
    if direction in (Direction.UP, Direction.DOWN):
        return max(canvases, key=lambda c: (c[1] / c[0], c[0] * c[1]))
    target = math.log(input_size[0] / input_size[1])
    # Closest aspect ratio; on a tie the larger canvas (the API's own default is 1024×1024).
    return min(canvases, key=lambda c: (abs(math.log(c[0] / c[1]) - target), -c[0] * c[1]))


def place(
    input_size: Size,
    direction: Direction,
    *,
    canvas: Size | None = None,
    offset_x: int | None = None,
    offset_y: int | None = None,
    scale: float | None = None,
) -> Placement:
    canvas = canvas or _default_canvas(input_size, direction)
    cw, ch = canvas
    if direction is Direction.CUSTOM:
        return _custom(input_size, canvas, offset_x or 0, offset_y or 0, scale or 1.0)
    if direction is Direction.ZOOM_OUT:
        w, h = _fit(input_size, (cw / ZOOM_OUT_FACTOR, ch / ZOOM_OUT_FACTOR))
        x, y = (cw - w) // 2, (ch - h) // 2
    elif direction in (Direction.LEFT, Direction.RIGHT):
        w, h = _fit(input_size, (cw * (1 - EXTEND_MIN_FRACTION), ch))
        x = cw - w if direction is Direction.LEFT else 0
        y = (ch - h) // 2
    else:
        w, h = _fit(input_size, (cw, ch * (1 - EXTEND_MIN_FRACTION)))
        x = (cw - w) // 2
        y = ch - h if direction is Direction.UP else 0
    return Placement(canvas, _snap(x), _snap(y), (w, h), api.OUTPAINT_PRESET_SCALE)


def _snap(offset: int) -> int:
    return offset // _GRID * _GRID


def _custom(input_size: Size, canvas: Size, x: int, y: int, scale: float) -> Placement:
    cw, ch = canvas
    if x >= cw:
        raise InvalidParameter("offset_x", x, f"inside the {cw}-pixel-wide canvas (0 to {cw - 8})")
    if y >= ch:
        raise InvalidParameter("offset_y", y, f"inside the {ch}-pixel-high canvas (0 to {ch - 8})")
    # The input is sent fitted to the canvas; ``scale`` then sizes it on the canvas.
    return Placement(canvas, x, y, _fit(input_size, (cw, ch)), scale)
