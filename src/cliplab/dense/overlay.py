"""Pictures of a segmentation: a colour label map blended over the image, with a legend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

_BASE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
                  [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0]],
                 dtype=np.uint8)  # fmt: skip


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours: black for class 0, then distinct colours (cycling past 18)."""
    return _BASE[np.arange(n) % len(_BASE)] if n <= len(_BASE) else np.concatenate([_BASE, _BASE[1:][np.arange(n - len(_BASE)) % (len(_BASE) - 1)]])


def colour_labels(labels: np.ndarray, n_classes: int) -> Image.Image:
    return Image.fromarray(palette(n_classes)[labels])


def overlay(image: Image.Image, labels: np.ndarray, classes: Sequence[str], alpha: float = 0.5, legend: bool = True) -> Image.Image:
    """``image`` with the label colours blended in (``alpha``), and a legend strip on the right."""
    image = image.convert("RGB")
    blended = Image.blend(image, colour_labels(labels, len(classes)).resize(image.size, Image.NEAREST), alpha)
    if not legend:
        return blended
    colours = palette(len(classes))
    row = 14
    width = 12 + max(6 * len(c) for c in classes) + 20
    canvas = Image.new("RGB", (blended.width + width, max(blended.height, row * len(classes) + 4)), "white")
    canvas.paste(blended, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(classes):
        y = 2 + i * row
        draw.rectangle([blended.width + 4, y, blended.width + 14, y + 10], fill=tuple(int(v) for v in colours[i]), outline="grey")
        draw.text((blended.width + 18, y - 1), name, fill="black")
    return canvas
