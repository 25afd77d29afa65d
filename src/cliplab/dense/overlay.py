"""Pictures of a segmentation: a colour label map blended over the image, each region outlined in its
solid class colour (the colour its legend swatch shows), with a legend."""

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


def outlines(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels on the edge of their region (a 4-neighbour of another class, or the image border)."""
    edge = np.ones_like(labels, dtype=bool)
    inner = labels[1:-1, 1:-1]
    edge[1:-1, 1:-1] = ((inner != labels[:-2, 1:-1]) | (inner != labels[2:, 1:-1])
                        | (inner != labels[1:-1, :-2]) | (inner != labels[1:-1, 2:]))  # fmt: skip
    return edge


def overlay(image: Image.Image, labels: np.ndarray, classes: Sequence[str], alpha: float = 0.5, legend: bool = True) -> Image.Image:
    """``image`` with the label colours blended in (``alpha``) and each region outlined in its solid
    colour, so every legend swatch is a colour drawn on its class; a legend strip on the right."""
    image = image.convert("RGB")
    at_size = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(image.size, Image.NEAREST))
    solid = palette(len(classes))[at_size]
    drawn = np.asarray(Image.blend(image, Image.fromarray(solid), alpha)).copy()
    edge = outlines(at_size)
    drawn[edge] = solid[edge]
    blended = Image.fromarray(drawn)
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
