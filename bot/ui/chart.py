"""The usage chart attached to ``/quota report``: credits spent per day, as a bar chart.

Drawn with Pillow (already a dependency) rather than a plotting library: one chart type,
a few dozen lines.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 800, 360
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 20, 40, 50
BACKGROUND = (47, 49, 54)
BAR = (88, 101, 242)
TEXT = (220, 221, 222)
GRID = (79, 84, 92)


def usage_chart(per_day: Sequence[tuple[date, int]], title: str) -> bytes:
    """A PNG bar chart of (day, credits spent); days with no spend should be included as 0."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    draw.text((MARGIN_LEFT, 10), title, fill=TEXT, font=font)

    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    top = max((credits for _, credits in per_day), default=0) or 1
    for i in range(5):  # horizontal grid with labels
        y = MARGIN_TOP + plot_h - plot_h * i // 4
        draw.line([(MARGIN_LEFT, y), (WIDTH - MARGIN_RIGHT, y)], fill=GRID)
        draw.text((5, y - 8), str(top * i // 4), fill=TEXT, font=font)

    if per_day:
        slot = plot_w / len(per_day)
        label_every = max(1, len(per_day) // 10)
        for i, (day, credits) in enumerate(per_day):
            x0 = MARGIN_LEFT + i * slot + slot * 0.15
            x1 = MARGIN_LEFT + (i + 1) * slot - slot * 0.15
            y0 = MARGIN_TOP + plot_h - plot_h * credits / top
            if credits:
                draw.rectangle([x0, y0, x1, MARGIN_TOP + plot_h], fill=BAR)
            if i % label_every == 0:
                draw.text(
                    (x0, HEIGHT - MARGIN_BOTTOM + 8), day.strftime("%m-%d"), fill=TEXT, font=font
                )

    out = io.BytesIO()
    image.save(out, "PNG", compress_level=6)
    return out.getvalue()
