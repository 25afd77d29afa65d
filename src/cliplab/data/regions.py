"""Regions of an image: a pixel box ``[x0, y0, x1, y1]`` and the phrase that names what is in it.

Region-aware training (CLOC, GRAIN, FarSLIP, DeCLIP, DCLIP) reads them: synthetic scenes give one
per object exactly (:func:`scene_regions`); a manifest gives them in a ``regions`` column, a JSON list
of ``{"box": [x0, y0, x1, y1], "phrase": "..."}`` in pixel coordinates (:func:`parse_regions`); a
``phrase`` may be a list of descriptions of the same region, the first the fullest.
A box follows the image through the model's resize and centre crop (:func:`boxes_to_input`).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cliplab.data import synthetic

REGION_KEYS = ("regions",)


@dataclass(frozen=True)
class Region:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the image as stored
    phrase: str  # the fullest description
    variants: tuple[str, ...] = ()  # other true descriptions of it ("a dog", "a brown dog"): training draws one per step

    @property
    def phrases(self) -> tuple[str, ...]:
        """Every description of the region, the fullest first."""
        return (self.phrase, *self.variants)


def object_phrase(obj: synthetic.SceneObject) -> str:
    """'a small red star at the top left', as the full captions name an object."""
    return synthetic.with_article(f"{obj.size} {obj.color} {obj.shape} {synthetic.position_phrase(obj.position)}")


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The pixel box around a mask's pixels (x1, y1 exclusive), None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def scene_regions(record: synthetic.SceneRecord) -> list[Region]:
    """One region per visible object of a rendered scene: its box (from the instance mask) and phrase."""
    out = []
    for obj, mask in zip(record.spec.objects, record.instance_masks):
        box = mask_box(mask)
        if box is not None:
            out.append(Region(box, object_phrase(obj)))
    return out


def without_words(regions: Sequence[Region], words: Sequence[str]) -> list[Region]:
    """The regions none of whose phrases names any of ``words`` (whole words, any case): a held-out
    concept then reaches training only through the images, the captions and its regions' boxes without
    their phrases (the terms that read no phrase: DeCLIP's content view), never through a region's phrase."""
    if not words:
        return list(regions)
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return [r for r in regions if not any(pattern.search(p) for p in r.phrases)]


def _bad(entry, width: int, height: int) -> bool:
    try:
        x0, y0, x1, y1 = (float(v) for v in entry["box"])
        phrases = _phrases(entry["phrase"])
    except (KeyError, TypeError, ValueError):
        return True
    if not phrases:
        return True
    inside = 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    return not (inside and np.isfinite([x0, y0, x1, y1]).all())


def _phrases(value) -> list[str]:
    """A manifest region's descriptions: one string or a list of them ([] when any is not a non-empty string)."""
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v.strip() for v in values):
        return []
    return [v.strip() for v in values]


def parse_regions(value, row: str, width: int, height: int) -> list[Region]:
    """The regions of manifest row ``row`` (a JSON string or an already parsed list). Bad entries (no
    phrase, a box outside the ``width`` x ``height`` image, empty, or with x1 <= x0) are skipped, with
    one warning naming the row and how many were skipped."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            warnings.warn(f"row {row}: its regions are not JSON; write a list of {{\"box\": [x0, y0, x1, y1], \"phrase\": ...}}", stacklevel=2)
            return []
    entries = value if isinstance(value, list) else [value]
    good = [e for e in entries if not _bad(e, width, height)]
    if len(good) < len(entries):
        warnings.warn(f"row {row}: skipped {len(entries) - len(good)} of {len(entries)} regions (no phrase, outside the "
                      f"{width}x{height} image, empty, or x1 <= x0)", stacklevel=2)  # fmt: skip
    out = []
    for entry in good:
        first, *more = _phrases(entry["phrase"])
        out.append(Region(tuple(float(v) for v in entry["box"]), first, tuple(more)))
    return out


def boxes_to_input(boxes: np.ndarray, width: int, height: int, size: int, resize_mode: str = "shortest") -> tuple[np.ndarray, np.ndarray]:
    """``boxes`` (K, 4) in pixels of a ``width`` x ``height`` image, moved to the model input of side
    ``size``: open_clip's resize (``shortest`` side to ``size`` then a centre crop, ``longest`` side
    to ``size`` then centred padding, or ``squash``). Returns the boxes clipped to the input and which
    kept an area (a box the crop cuts away entirely is dropped)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if resize_mode == "squash":
        scale = np.array([size / width, size / height] * 2)
        moved = boxes * scale
    else:
        fit = min if resize_mode == "longest" else max
        s = fit(size / width, size / height)
        offset = np.array([(size - width * s) / 2, (size - height * s) / 2] * 2)  # negative: cropped away
        moved = boxes * s + offset
    moved = np.clip(moved, 0, size)
    kept = (moved[:, 2] - moved[:, 0] > 1e-6) & (moved[:, 3] - moved[:, 1] > 1e-6)
    return moved, kept
