"""Image-caption pairs for training, from any captioned source or from synthetic scenes.

``open_pairs("synthetic:20000")`` gives scenes 0..19999 of the ``train`` split (seed 0), drawn
lazily; each has its full caption with the short caption and a paraphrase as rewrites. Any other
spec goes through :func:`cliplab.data.sources.open_source` (folder, CSV/TSV/JSONL manifest,
webdataset shards); only items with a caption are kept. In a manifest, a list of captions or a
``rewrites`` column gives rewrites and a ``hard_negatives`` (or ``negatives``) column gives
hard-negative captions, and a ``regions`` column boxes with phrases (:mod:`cliplab.data.regions`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from cliplab.data import synthetic
from cliplab.data.images import decode_image
from cliplab.data.items import ImageItem
from cliplab.data.regions import Region, parse_regions, scene_regions
from cliplab.errors import SourceError

REWRITE_KEYS = ("rewrites", "rewritten_captions")
NEGATIVE_KEYS = ("hard_negatives", "negatives", "negative_captions")


@dataclass
class Pair:
    id: str
    image: Image.Image
    captions: list[str]  # the caption, then its rewrites
    negatives: list[str] = field(default_factory=list)  # hard-negative captions given by the data
    spec: synthetic.SceneSpec | None = None  # a synthetic scene's description, from which edited twins are drawn
    regions: list[Region] = field(default_factory=list)  # boxes (pixels of ``image``) with phrases


class SyntheticPairs:
    """Scenes ``0..n-1`` of ``(seed, "train")`` with their captions (the held-out split stays unseen)."""

    def __init__(self, n: int, seed: int = 0, image_size: int = 64, max_objects: int = 2) -> None:
        self.n, self.seed, self.image_size, self.max_objects = n, seed, image_size, max_objects

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Pair:
        return self.pair(index, self.spec(index))

    def spec(self, index: int) -> synthetic.SceneSpec:
        return synthetic.sample_spec(synthetic.scene_rng(self.seed, "train", index), "train", self.max_objects)

    def captions(self, index: int, spec: synthetic.SceneSpec) -> list[str]:
        """The full and short captions of ``spec`` and a paraphrase worded from scene ``index``'s seed."""
        paraphrase = synthetic.paraphrase(spec, np.random.default_rng([self.seed, index, 1]))
        return [synthetic.full_caption(spec), synthetic.short_caption(spec), paraphrase]

    def parallel_captions(self, index: int, spec: synthetic.SceneSpec, kind: str, language: str) -> dict[str, str]:
        """The ``kind`` caption (full, short, paraphrase) in ``language`` and in English, saying the same."""
        if kind == "paraphrase":
            rng = np.random.default_rng([self.seed, index, 1])
            return synthetic.parallel_paraphrases(spec, rng, tuple(dict.fromkeys((language, "en"))))
        return {lang: synthetic.caption(spec, kind, lang) for lang in (language, "en")}

    def pair(self, index: int, spec: synthetic.SceneSpec, suffix: str = "") -> Pair:
        """Scene ``index`` drawn as ``spec`` (its own, or an edited twin's)."""
        record = synthetic.render(spec, self.image_size)
        return Pair(f"synthetic-train-{self.seed}-{index:06d}{suffix}", record.image, self.captions(index, spec), spec=spec,
                    regions=scene_regions(record))  # fmt: skip


def _texts(value) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


class SourcePairs:
    """The captioned items of an opened source; images are decoded when asked for."""

    def __init__(self, items: list[ImageItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Pair:
        item = self.items[index]
        rewrites = [t for key in REWRITE_KEYS for t in _texts(item.meta.get(key))]
        negatives = [t for key in NEGATIVE_KEYS for t in _texts(item.meta.get(key))]
        image = decode_image(item.read_bytes(), item.id)
        regions = parse_regions(item.meta.get("regions"), item.id, *image.size)
        return Pair(item.id, image, [*item.captions, *rewrites], negatives, regions=regions)


def open_pairs(spec: str | os.PathLike) -> SyntheticPairs | SourcePairs:
    """Training pairs for a data spec; a source without any caption raises SourceError."""
    from cliplab.data.sources import open_source
    from cliplab.data.sources.dispatch import _parse_synthetic as parse_synthetic

    text = os.fspath(spec)
    head, _, rest = text.partition(":")
    if head in ("synthetic", "synth") and rest:
        n, seed = parse_synthetic(text, rest)
        if n == 0:
            raise SourceError(f"{text!r} holds no scenes; use synthetic:<n> with n > 0")
        return SyntheticPairs(n, seed)
    source = open_source(text)
    items = [it for it in source.items if it.captions]
    if not items:
        raise SourceError(f"{text!r} has no captioned images ({len(source.items)} images, none with a caption); training needs image-caption pairs")
    return SourcePairs(items)
