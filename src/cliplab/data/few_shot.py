"""Few-shot splits and augmented views of the shot images.

``few_shot_split(labels, shots, seed)`` picks K examples per class (all of a class that has fewer,
with a warning); ``stratified_split(labels, fraction, seed)`` holds out a share of each class. ``augmented_views(images, n_views, seed)`` draws N random-resized-crop + flip views
of each image, the augmentation Tip-Adapter and GDA use for their cache/support features
(RandomResizedCrop(scale=(0.5, 1)) + horizontal flip, reference a/b).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cliplab.errors import InputError

DEFAULT_CROP_SCALE = (0.5, 1.0)  # Tip-Adapter / GDA cache loader


def few_shot_split(labels: Sequence[Any], shots: int, seed: int, exclude: Sequence[int] | None = None) -> np.ndarray:
    """Sorted row indices of ``shots`` examples per class, drawn with ``seed``.

    labels: one label per row (ints or strings; ``None`` rows are never picked).
    exclude: row indices that must not be picked (e.g. a split taken before).
    A class with fewer than ``shots`` usable rows contributes all of them, with a warning.
    """
    if shots < 1:
        raise InputError(f"shots must be >= 1, got {shots}")
    labels = np.asarray(list(labels), dtype=object)
    usable = np.array([lab is not None for lab in labels], dtype=bool)
    if exclude is not None and len(exclude):
        usable[np.asarray(exclude, dtype=np.int64)] = False
    rng = np.random.default_rng(seed)
    picked: list[np.ndarray] = []
    short: list[str] = []
    classes = sorted({lab for lab in labels[usable]}, key=str)
    if not classes:
        raise InputError("no labelled rows to draw a few-shot split from; pass a labelled dataset")
    for cls in classes:
        rows = np.flatnonzero(usable & (labels == cls))
        if len(rows) < shots:
            short.append(f"{cls} ({len(rows)})")
            picked.append(rows)
        else:
            picked.append(np.sort(rng.choice(rows, size=shots, replace=False)))
    if short:
        warnings.warn(
            f"{len(short)} class(es) have fewer than {shots} examples and use all they have: {', '.join(short[:5])}",
            UserWarning,
            stacklevel=2,
        )
    return np.sort(np.concatenate(picked))


# The share of each class of a training pool set aside, before any draw, to choose which adaptation
# method to export (``cliplab.adapt.export``), and its seed (the test split held out of --train uses 0).
SELECTION_FRACTION = 0.2
SELECTION_SEED = 1


def stratified_split(labels: Sequence[Any], fraction: float, seed: int, name: str = "fraction",
                     keep_one: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(kept rows, held-out rows): ``round(fraction * n_c)`` rows of each class held out, drawn from
    ``seed``. With ``keep_one`` a class of two or more rows holds out at least one and keeps at least
    one, and a class of one row holds out none. ``name`` spells the fraction in the error."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"{name} must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(rows)))
        if keep_one:
            k = min(max(k, 1), len(rows) - 1) if len(rows) > 1 else 0
        held.append(rows[:k])
    held_rows = np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), held_rows), held_rows


def random_resized_crop_flip(
    image: Image.Image, rng: np.random.Generator, scale: tuple[float, float] = DEFAULT_CROP_SCALE,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """One RandomResizedCrop (same size as the input) + horizontal flip with probability 1/2.

    The crop box follows torchvision's RandomResizedCrop sampling (area in ``scale``, log-uniform
    aspect ratio in ``ratio``, 10 tries, then a centre crop), drawn from ``rng`` so it is seeded.
    """
    width, height = image.size
    area = width * height
    box = None
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:
        side = min(width, height)
        box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    view = image.crop(box).resize((width, height), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return view


def augmented_views(images: Sequence[Image.Image], n_views: int, seed: int) -> list[list[Image.Image]]:
    """``n_views`` augmented views of each image (random-resized-crop + flip), seeded per image."""
    if n_views < 1:
        raise InputError(f"n_views must be >= 1, got {n_views}")
    out = []
    for i, image in enumerate(images):
        rng = np.random.default_rng([seed, i])
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        out.append([random_resized_crop_flip(rgb, rng) for _ in range(n_views)])
    return out
