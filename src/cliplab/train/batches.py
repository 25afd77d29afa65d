"""Seeded global batches, one per step, sliced per rank.

Step ``s`` takes positions ``s*B .. s*B+B-1`` of an endless sequence of epochs, each a
permutation of the pairs drawn from ``(seed, epoch)``; the caption (or rewrite) and the hard
negative of each example are drawn from ``(seed, step, position)``. A batch therefore depends on
nothing but its step: a resumed run sees the same batches as an uninterrupted one, and rank r
of W processes gets rows ``r*B/W .. (r+1)*B/W - 1`` of the very batch one process would see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from cliplab.errors import InputError
from cliplab.train.hard_negatives import hard_negative
from cliplab.train.pairs import Pair
from cliplab.train.rewrites import pick_caption


def caption_id(text: str) -> int:
    """A stable 63-bit id of a caption text (equal texts, equal ids, on every rank)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def short_caption(caption: str) -> str:
    """Long-CLIP's short caption: the first sentence."""
    return caption.split(". ")[0]


@dataclass(frozen=True)
class BatchPlan:
    batch_size: int  # global, over all ranks
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    hard_negatives: bool = False
    short_captions: bool = False
    rule_rewrites: bool = False
    keep_images: bool = False  # also pass the PIL images (for a teacher with its own preprocessing)

    def __post_init__(self) -> None:
        if self.batch_size % self.world_size:
            raise InputError(f"batch size {self.batch_size} does not split evenly over {self.world_size} processes")


class StepBatches(torch.utils.data.IterableDataset):
    """Batches for steps ``start .. stop-1`` as dicts of tensors (this rank's rows)."""

    def __init__(self, pairs: Sequence[Pair], preprocess: Callable[[Image.Image], torch.Tensor],
                 tokenize: Callable[[list[str]], torch.Tensor], plan: BatchPlan, start: int, stop: int) -> None:  # fmt: skip
        super().__init__()
        if len(pairs) == 0:
            raise InputError("no training pairs")
        self.pairs, self.preprocess, self.tokenize = pairs, preprocess, tokenize
        self.plan, self.start, self.stop = plan, start, stop
        self._perm: tuple[int, np.ndarray] | None = None

    def _index(self, position: int) -> int:
        n = len(self.pairs)
        epoch, offset = divmod(position, n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.plan.seed, epoch]).permutation(n))
        return int(self._perm[1][offset])

    def make_batch(self, step: int) -> dict:
        plan = self.plan
        local = plan.batch_size // plan.world_size
        first = step * plan.batch_size + plan.rank * local
        ids, images, captions, negatives = [], [], [], []
        for position in range(first, first + local):
            pair = self.pairs[self._index(position)]
            rng = np.random.default_rng([plan.seed, step, position])
            caption = pick_caption(pair.captions, rng, plan.rule_rewrites)
            ids.append(pair.id)
            images.append(pair.image)
            captions.append(caption)
            if plan.hard_negatives:
                given = pair.negatives
                negatives.append(given[rng.integers(len(given))] if given else hard_negative(caption, rng))
        batch = {
            "ids": ids,
            "captions": captions,
            "pixels": torch.stack([self.preprocess(im) for im in images]),
            "tokens": self.tokenize(captions),
            "caption_ids": torch.tensor([caption_id(c) for c in captions], dtype=torch.int64),
        }
        if plan.hard_negatives:
            batch["negatives"] = self.tokenize([n or "" for n in negatives])
            batch["negatives_valid"] = torch.tensor([n is not None for n in negatives])
        if plan.keep_images:
            batch["images"] = images
        if plan.short_captions:
            batch["short_tokens"] = self.tokenize([short_caption(c) for c in captions])
        return batch

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        workers, me = (info.num_workers, info.id) if info else (1, 0)
        for step in range(self.start + me, self.stop, workers):  # the loader interleaves workers in order
            yield self.make_batch(step)
