"""Seeded global batches, one per step, sliced per rank.

Step ``s`` takes positions ``s*B .. s*B+B-1`` of an endless sequence of epochs, each a
permutation of the pairs drawn from ``(seed, epoch)``; the caption (or rewrite) and the hard
negative of each example are drawn from ``(seed, step, position)``. A batch therefore depends on
nothing but its step: a resumed run sees the same batches as an uninterrupted one, and rank r
of W processes gets rows ``r*B/W .. (r+1)*B/W - 1`` of the very batch one process would see.

With hard negatives on synthetic scenes, a step takes B/2 positions and each scene is followed by
its edited twin (:func:`cliplab.train.hard_negatives.edited_scene`: colours exchanged, or a shape
or size changed), image and caption, worded like the scene's caption. Every caption then meets
the image it almost describes and every image the caption it almost matches: the symmetric,
edited-pair hard negatives of CLIP-IN (Wang et al. 2025), in both directions of each loss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from cliplab.data.regions import Region, boxes_to_input, without_words
from cliplab.errors import InputError
from cliplab.train.hard_negatives import edited_scene, hard_negative, swapped_phrases
from cliplab.train.pairs import Pair, SyntheticPairs
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
    languages: tuple[str, ...] | None = None  # synthetic scenes: each caption in a language drawn from these (and its English parallel)
    regions: RegionInput | None = None  # pass each image's regions, moved to the model input (region objectives)

    def __post_init__(self) -> None:
        if self.batch_size % self.world_size:
            raise InputError(f"batch size {self.batch_size} does not split evenly over {self.world_size} processes")


@dataclass(frozen=True)
class RegionInput:
    """How regions reach a batch: the model input they are moved to, and the words no phrase may name."""

    size: int  # the model's input side
    resize_mode: str = "shortest"
    exclude_words: tuple[str, ...] = ()
    negatives: bool = False  # also each phrase's attribute-swapped versions (hard_negatives.swapped_phrases)
    caption_swaps: bool = False  # also each caption's shape-swapped versions, into every shape: captions may name held-out words


def swapped_rows(texts: Sequence[str], exclude: tuple[str, ...], tokenize: Callable[[list[str]], torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Each text's attribute-swapped versions (:func:`swapped_phrases`, never into an ``exclude`` word):
    (N*K tokens, K per text, "" as padding; None when there are none) and which exist, (N, K) bool."""
    swaps = [swapped_phrases(t, exclude) for t in texts]
    k = max((len(s) for s in swaps), default=0)
    valid = torch.tensor([[j < len(s) for j in range(k)] for s in swaps], dtype=torch.bool).reshape(-1, k)
    flat = [s[j] if j < len(s) else "" for s in swaps for j in range(k)]
    return (tokenize(flat) if flat else None), valid


def region_rows(rows: Sequence[tuple[Image.Image, list[Region]]], spec: RegionInput, tokenize: Callable[[list[str]], torch.Tensor],
                rngs: Sequence[np.random.Generator]) -> dict:  # fmt: skip
    """A batch's regions as tensors: ``region_boxes`` (R, 5) = row, x0, y0, x1, y1 in input pixels,
    ``region_tokens`` (one of each region's phrases, drawn from its row's generator in ``rngs``, as a
    caption is), ``region_phrase_ids`` (equal phrases, equal ids, on every rank) and ``region_true_ids``
    (R, A): the ids of every phrase of the region (padded with its drawn one), so that a phrase drawn for
    another region that also describes this one counts as its positive. Regions the crop cuts away, and
    those naming an excluded word, are left out; the boxes of the latter, without any phrase, are
    ``region_unnamed_boxes`` (R', 5), for the terms that read no phrase. With ``spec.negatives`` also ``region_negative_tokens``
    (R*K phrases, K per region, "" as padding) and ``region_negatives_valid`` (R, K)."""
    boxes, phrases, true_ids, unnamed = [], [], [], []
    for row, ((image, regions), rng) in enumerate(zip(rows, rngs)):
        named = without_words(regions, spec.exclude_words)
        held_out = [r for r in regions if r not in named]
        if held_out:
            moved, kept = boxes_to_input(np.array([r.box for r in held_out]), *image.size, spec.size, spec.resize_mode)
            unnamed += [[row, *box] for box, keep in zip(moved, kept) if keep]
        regions = named
        if not regions:
            continue
        moved, kept = boxes_to_input(np.array([r.box for r in regions]), *image.size, spec.size, spec.resize_mode)
        for region, box, keep in zip(regions, moved, kept):
            if keep:
                boxes.append([row, *box])
                phrases.append(region.phrases[rng.integers(len(region.phrases))])
                true_ids.append([caption_id(p) for p in region.phrases])
    width = max((len(t) for t in true_ids), default=1)
    padded = [t + [caption_id(p)] * (width - len(t)) for t, p in zip(true_ids, phrases)]
    out = {
        "region_boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 5),
        "region_tokens": tokenize(phrases) if phrases else None,
        "region_phrase_ids": torch.tensor([caption_id(p) for p in phrases], dtype=torch.int64),
        "region_true_ids": torch.tensor(padded, dtype=torch.int64).reshape(-1, width),
        "region_unnamed_boxes": torch.tensor(unnamed, dtype=torch.float32).reshape(-1, 5),
    }
    if spec.negatives:
        out["region_negative_tokens"], out["region_negatives_valid"] = swapped_rows(phrases, spec.exclude_words, tokenize)
    return out


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
        self.twins = plan.hard_negatives and isinstance(pairs, SyntheticPairs)
        if self.twins and plan.batch_size % 2:
            raise InputError(f"batch size {plan.batch_size} is odd; hard negatives on synthetic scenes pair each scene with its twin")

    def _index(self, position: int) -> int:
        n = len(self.pairs)
        epoch, offset = divmod(position, n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.plan.seed, epoch]).permutation(n))
        return int(self._perm[1][offset])

    def _row(self, step: int, row: int) -> tuple[str, Image.Image, str, str | None, list[Region]]:
        """Row ``row`` of step ``step``'s global batch: (id, image, caption, hard-negative caption, regions)."""
        if self.plan.languages and isinstance(self.pairs, SyntheticPairs):
            return self._row_translated(step, row)
        plan = self.plan
        per_step = plan.batch_size // 2 if self.twins else plan.batch_size
        position = step * per_step + (row // 2 if self.twins else row)
        index = self._index(position)
        rng = np.random.default_rng([plan.seed, step, position])
        if self.twins:
            spec = self.pairs.spec(index)
            captions = self.pairs.captions(index, spec)
            caption = pick_caption(captions, rng, plan.rule_rewrites)
            twin = edited_scene(spec, rng)
            if row % 2:  # the twin, its caption worded as the scene's (full, short or paraphrase)
                pair = self.pairs.pair(index, twin, suffix=f"-edit-{step}")
                caption = pair.captions[captions.index(caption) if caption in captions else 0]
            else:
                pair = self.pairs.pair(index, spec)
        else:
            pair = self.pairs[index]
            caption = pick_caption(pair.captions, rng, plan.rule_rewrites)
        if not plan.hard_negatives:
            return pair.id, pair.image, caption, None, pair.regions
        given = pair.negatives
        negative = given[rng.integers(len(given))] if given else hard_negative(caption, rng)
        return pair.id, pair.image, caption, negative, pair.regions

    def _row_translated(self, step: int, row: int) -> tuple[str, Image.Image, str, str | None, list[Region]]:
        """A row with RS-M-CLIP's translation augmentation: the caption kind (full, short, paraphrase)
        and its language are drawn per caption per step; the English parallel is kept for a teacher."""
        plan = self.plan
        position = step * plan.batch_size + row
        index = self._index(position)
        rng = np.random.default_rng([plan.seed, step, position])
        spec = self.pairs.spec(index)
        language = plan.languages[rng.integers(len(plan.languages))]
        kind = ("full", "short", "paraphrase")[rng.integers(3)]
        texts = self.pairs.parallel_captions(index, spec, kind, language)
        pair = self.pairs.pair(index, spec)
        self._english[(step, row)] = texts["en"]
        return pair.id, pair.image, texts[language], None, pair.regions

    def make_batch(self, step: int) -> dict:
        plan = self.plan
        local = plan.batch_size // plan.world_size
        self._english: dict[tuple[int, int], str] = {}
        rows = range(plan.rank * local, (plan.rank + 1) * local)
        ids, images, captions, negatives, regions = (list(x) for x in zip(*(self._row(step, row) for row in rows)))
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
        if self._english:
            batch["teacher_captions"] = [self._english[(step, row)] for row in rows]
        if plan.short_captions:
            batch["short_tokens"] = self.tokenize([short_caption(c) for c in captions])
        if plan.regions is not None:
            rngs = [np.random.default_rng([plan.seed, step, row, 2]) for row in rows]
            batch.update(region_rows(list(zip(images, regions)), plan.regions, self.tokenize, rngs))
            if plan.regions.caption_swaps:
                batch["caption_swap_tokens"], batch["caption_swaps_valid"] = swapped_rows(captions, (), self.tokenize)
        return batch

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        workers, me = (info.num_workers, info.id) if info else (1, 0)
        for step in range(self.start + me, self.stop, workers):  # the loader interleaves workers in order
            yield self.make_batch(step)
