"""Torch ``Dataset`` views of the synthetic scenes (random access, worker-safe)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from cliplab.data import synthetic
from cliplab.errors import InputError

TARGETS = ("caption", "short_caption", "paraphrase", "semantic_mask", "shape", "color", "size", "position", "background")


class SyntheticScenes(torch.utils.data.Dataset):
    """``(image, target)`` pairs of scenes ``0..n-1`` of ``(seed, split)``.

    ``target`` is a caption kind (``caption``, ``short_caption``, ``paraphrase``), ``semantic_mask``
    (a LongTensor), or an attribute of the first object / the background (its class index).
    ``transform`` is applied to the PIL image (e.g. a model's ``preprocess``).
    """

    def __init__(self, n: int, seed: int = 0, split: str = "train", target: str = "caption", image_size: int = 64,
                 max_objects: int = 2, transform: Callable | None = None) -> None:  # fmt: skip
        if target not in TARGETS:
            raise InputError(f"target {target!r} is unknown; use one of {', '.join(TARGETS)}")
        self.n, self.seed, self.split, self.target = n, seed, split, target
        self.image_size, self.max_objects, self.transform = image_size, max_objects, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        rec = synthetic.scene(index, self.seed, self.image_size, self.split, self.max_objects)
        image = self.transform(rec.image) if self.transform else rec.image
        return image, self._target(rec, index)

    def _target(self, rec: synthetic.SceneRecord, index: int) -> Any:
        if self.target in ("caption", "short_caption"):
            return getattr(rec, self.target)
        if self.target == "paraphrase":
            return synthetic.paraphrase(rec.spec, np.random.default_rng([self.seed, index, 1]))
        if self.target == "semantic_mask":
            return torch.from_numpy(rec.semantic_mask)
        value = rec.background if self.target == "background" else rec.objects[0][self.target]
        classes = {"shape": synthetic.SHAPES, "color": tuple(synthetic.COLORS), "size": tuple(synthetic.SIZES),
                   "position": tuple(synthetic.POSITIONS), "background": synthetic.BACKGROUNDS}[self.target]  # fmt: skip
        return classes.index(value)
