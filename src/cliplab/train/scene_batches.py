"""Training batches of synthetic scenes built around hard negatives.

Each batch holds pairs of scenes that differ in one attribute of one object (shape, colour, size
or position). A caption of one twin is then a wrong-but-close caption for the other, so the model
cannot solve the batch from colour, layout or background alone: it has to see every attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from cliplab.data import synthetic
from cliplab.errors import InputError

# How often a pair of twins differs in each attribute. Shape is the attribute a shortcut skips
# (colour, layout and background already tell most captions apart), so it gets the largest share.
TWIN_ATTRIBUTES = {"shape": 0.4, "color": 0.1, "size": 0.25, "position": 0.25}
# Caption kinds (with probabilities) that can tell apart two twins differing in the attribute:
# short captions ("a red star and a blue square") leave nothing but colour and shape to match on.
CAPTION_KINDS = {
    "shape": {"short": 0.5, "paraphrase": 0.25, "full": 0.25},
    "color": {"short": 0.5, "paraphrase": 0.25, "full": 0.25},
    "size": {"full": 1.0},
    "position": {"full": 1.0},
}


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    return keys[rng.choice(len(keys), p=np.array(list(weights.values())) / sum(weights.values()))]


def caption_for(spec: synthetic.SceneSpec, kind: str, rng: np.random.Generator) -> str:
    if kind == "full":
        return synthetic.full_caption(spec)
    if kind == "short":
        return synthetic.short_caption(spec)
    return synthetic.paraphrase(spec, rng)


class TwinSceneBatches(torch.utils.data.IterableDataset):
    """Endless trainer batches (dicts of ``ids``, ``pixels``, ``tokens``, ``caption_ids``) of
    ``batch_size`` scenes (pairs of twins); equal captions share a caption id. ``keep_images`` also
    passes the PIL ``images`` and the ``captions`` (for a distillation teacher). With ``languages``,
    each caption is said in a language drawn from them (RS-M-CLIP's translation augmentation) and
    ``teacher_captions`` holds its English parallel (for ``textdistill``).

    Batch ``b`` is drawn from ``np.random.default_rng([seed, b])``, so a resumed run that starts at
    batch ``start`` sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, preprocess: Callable[[Image.Image], torch.Tensor], tokenize: Callable[[list[str]], torch.Tensor],
                 batch_size: int = 128, seed: int = 0, start: int = 0, image_size: int = 64, max_objects: int = 2,
                 keep_images: bool = False, languages: tuple[str, ...] | None = None) -> None:  # fmt: skip
        super().__init__()
        if batch_size % 2:
            raise InputError(f"batch_size must be even (pairs of twins), got {batch_size}")
        self.preprocess, self.tokenize = preprocess, tokenize
        self.batch_size, self.seed, self.start = batch_size, seed, start
        self.image_size, self.max_objects, self.keep_images = image_size, max_objects, keep_images
        self.languages = tuple(languages) if languages else None

    def make_batch(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        images, captions, english = [], [], []
        for _ in range(self.batch_size // 2):
            spec = synthetic.sample_spec(rng, "train", self.max_objects)
            attribute = _choose(rng, TWIN_ATTRIBUTES)
            twin = synthetic.perturb_spec(spec, rng, "train", attribute)
            kind = _choose(rng, CAPTION_KINDS[attribute])
            for s in (spec, twin):
                images.append(synthetic.render(s, self.image_size).image)
                if self.languages is None:
                    captions.append(caption_for(s, kind, rng))
                    continue
                language = self.languages[rng.integers(len(self.languages))]
                if kind == "paraphrase":
                    texts = synthetic.parallel_paraphrases(s, rng, tuple(dict.fromkeys((language, "en"))))
                else:
                    texts = {lang: synthetic.caption(s, kind, lang) for lang in (language, "en")}
                captions.append(texts[language])
                english.append(texts["en"])
        ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        batch = {
            "ids": [f"twins-{self.seed}-{index}-{k}" for k in range(len(images))],
            "pixels": torch.stack([self.preprocess(im) for im in images]),
            "tokens": self.tokenize(captions),
            "caption_ids": torch.tensor([ids[c] for c in captions]),
        }
        if self.keep_images:
            batch.update(images=images)
        batch["captions"] = captions
        if english:
            batch["teacher_captions"] = english
        return batch

    def __iter__(self) -> Iterator[dict]:
        index = self.start
        while True:
            yield self.make_batch(index)
            index += 1
