"""Set-of-Marks images: a frame with labelled boxes around the regions a question refers to."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

MARK_COLORS = [
    (255, 40, 40),
    (40, 120, 255),
    (255, 200, 0),
    (0, 200, 120),
    (220, 60, 220),
    (255, 130, 0),
]


def draw_som(frame: np.ndarray, boxes: list, labels: list[str], scale: int = 3) -> Image.Image:
    """Draw `boxes` ([x, y, w, h] in frame pixels) labelled `labels` on an RGB frame, enlarged
    `scale` times (nearest) so that labels stay legible on small frames."""
    image = Image.fromarray(frame).resize(
        (frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST
    )
    draw = ImageDraw.Draw(image)
    for i, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        colour = MARK_COLORS[i % len(MARK_COLORS)]
        x, y, w, h = (v * scale for v in box)
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=2)
        left, top, right, bottom = draw.textbbox((0, 0), label)
        tx, ty = x, max(y - (bottom - top) - 4, 0)
        draw.rectangle([tx, ty, tx + right - left + 4, ty + bottom - top + 4], fill=colour)
        draw.text((tx + 2 - left, ty + 2 - top), label, fill=(0, 0, 0))
    return image
