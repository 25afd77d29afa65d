"""Images with semantic masks to evaluate segmentation on.

- ``synthetic:N[:seed]``: N test-split scenes of 1-2 objects; classes ``background`` + the eight shapes.
- a folder with ``images/`` (any image files), ``masks/`` (one PNG per image, same stem, pixel value =
  class index, 255 = ignore) and ``classes.txt`` (one name per line, line i = value i; a first line
  ``background`` makes class 0 the background, and ``background`` on any other line is refused, as is
  a mask value past the last line).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cliplab.data import synthetic
from cliplab.data.images import open_image
from cliplab.dense.metrics import IGNORE
from cliplab.dense.segment import BACKGROUND
from cliplab.errors import InputError, SourceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")



@dataclass
class MaskDataset:
    name: str
    classes: list[str]  # classes[0] is "background" when the masks have a background class
    ids: list[str]
    load: Callable[[int], tuple[Image.Image, np.ndarray]]  # index -> (image, mask)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[tuple[str, Image.Image, np.ndarray]]:
        for i, name in enumerate(self.ids):
            yield (name, *self.load(i))


def synthetic_masks(n: int, seed: int = 0, image_size: int = 64) -> MaskDataset:
    def load(i: int) -> tuple[Image.Image, np.ndarray]:
        record = synthetic.scene(i, seed=seed, image_size=image_size, split="test", max_objects=2)
        return record.image, record.semantic_mask

    return MaskDataset(f"synthetic:{n}:{seed}", ["background", *synthetic.SHAPES], [f"scene-{i:05d}" for i in range(n)], load)


def folder_masks(root: str | os.PathLike) -> MaskDataset:
    root = Path(root)
    images_dir, masks_dir, names_file = root / "images", root / "masks", root / "classes.txt"
    for path in (images_dir, masks_dir, names_file):
        if not path.exists():
            raise SourceError(f"segmentation dataset {root}: {path.name} is missing; expected images/, masks/ and classes.txt")
    classes = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(p, masks_dir / f"{p.stem}.png") for p in images]
    missing = [m.name for _, m in pairs if not m.is_file()]
    if missing:
        raise SourceError(f"segmentation dataset {root}: {len(missing)} images have no mask in masks/, e.g. {missing[0]}")
    if not pairs:
        raise SourceError(f"segmentation dataset {root}: images/ holds no images")

    check_class_order(names_file, classes, [m for _, m in pairs])

    def load(i: int) -> tuple[Image.Image, np.ndarray]:
        image_path, mask_path = pairs[i]
        return open_image(image_path), read_mask(mask_path)

    return MaskDataset(str(root), classes, [p.stem for p, _ in pairs], load)


def read_mask(path: Path) -> np.ndarray:
    mask = np.asarray(Image.open(path))
    if mask.ndim != 2:
        raise SourceError(f"mask {path} is not single-channel; store class indices as a greyscale or palette PNG")
    return mask


def check_class_order(names_file: Path, classes: list[str], masks: list[Path]) -> None:
    """``classes.txt`` must name every mask value in order: ``background`` (if named) on the first line,
    as value 0, and no mask value (other than 255, ignore) at or past the number of lines. A list
    missing its ``background`` line would shift every class by one without a word."""
    if not classes:
        raise SourceError(f"{names_file} names no class; write one name per line, line i for mask value i")
    if BACKGROUND in classes[1:]:
        raise SourceError(f"{names_file}: 'background' is on line {classes.index(BACKGROUND) + 1}; it must be the first line (mask value 0)")
    for path in masks:
        values = np.unique(read_mask(path))
        top = int(values[values != IGNORE].max(initial=0))
        if top >= len(classes):
            first = "" if classes[0] == BACKGROUND else " (if value 0 is the background, put 'background' on the first line)"
            raise SourceError(f"mask {path} has value {top} but {names_file} names {len(classes)} classes (values 0-{len(classes) - 1}){first}")


def open_mask_dataset(spec: str | os.PathLike, image_size: int = 64) -> MaskDataset:
    """A dataset from ``synthetic:N[:seed]`` or a folder (see the module docstring)."""
    text = os.fspath(spec)
    if text.startswith("synthetic:"):
        return synthetic_masks(*synthetic_spec(text), image_size)
    return folder_masks(text)


def synthetic_spec(text: str) -> tuple[int, int]:
    """(n, seed) of a ``synthetic:N[:seed]`` spec (seed 0 when left out)."""
    parts = text.split(":")[1:]
    try:
        n, seed = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError) as exc:
        raise InputError(f"synthetic dataset spec is synthetic:N[:seed], got {text!r}") from exc
    if n < 1:
        raise InputError(f"synthetic dataset needs N >= 1 scenes, got {n}")
    return n, seed
