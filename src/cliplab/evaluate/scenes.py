"""Quality of a model on synthetic scenes: zero-shot accuracy per attribute, caption retrieval.

These are the figures the bundled model's card reports and ``cliplab demo`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cliplab.data import synthetic
from cliplab.data.synthetic import SceneRecord
from cliplab.evaluate.metrics import classification_metrics, retrieval_metrics
from cliplab.models.base import Model
from cliplab.zeroshot import ZeroShotClassifier


@dataclass
class AttributeResult:
    attribute: str
    classes: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    logits: np.ndarray = field(repr=False)
    metrics: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.metrics["acc1"])


def zero_shot_attribute(model: Model, image_emb: np.ndarray, records: list[SceneRecord], attribute: str) -> AttributeResult:
    """Zero-shot classification of one attribute of single-object scenes, with the attribute's own prompts."""
    classes = synthetic.attribute_values(attribute)
    clf = ZeroShotClassifier(model, classes, templates=synthetic.attribute_prompts(attribute)).fit()
    logits = clf.class_scores(image_emb)
    y = np.array([classes.index(synthetic.attribute_label(r.objects, r.background, attribute)) for r in records])
    metrics = classification_metrics(logits, y, classes)
    return AttributeResult(attribute, classes, y, logits.argmax(1), logits, metrics)


def single_object_scenes(n: int, seed: int, split: str = "test", image_size: int = 64) -> list[SceneRecord]:
    """Scenes with one object each: the attribute label of every image is unambiguous."""
    return synthetic.generate(n, seed=seed, image_size=image_size, split=split, max_objects=1)


def retrieval_scenes(n: int, seed: int, split: str = "test", image_size: int = 64) -> list[SceneRecord]:
    """Scenes with one or two objects, each with its full caption (seeded apart from the singles)."""
    return synthetic.generate(n, seed=seed + 1, image_size=image_size, split=split, max_objects=2)


def caption_retrieval(image_emb: np.ndarray, text_emb: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """CLIP_benchmark recall@k in both directions when caption i describes image i."""
    return retrieval_metrics(image_emb, text_emb, np.arange(len(text_emb)), ks=ks)


@dataclass
class SceneEvaluation:
    """Everything ``evaluate_scenes`` measured; ``figures()`` is the JSON-ready summary."""

    split: str
    seed: int
    attributes: dict[str, AttributeResult]
    retrieval: dict[str, float]
    captioned: list[SceneRecord] = field(repr=False)
    image_emb: np.ndarray = field(repr=False)
    text_emb: np.ndarray = field(repr=False)

    def figures(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "seed": self.seed,
            "n_classify": len(next(iter(self.attributes.values())).y_true) if self.attributes else 0,
            "n_retrieval": len(self.captioned),
            "zeroshot_accuracy": {a: r.accuracy for a, r in self.attributes.items()},
            "retrieval": self.retrieval,
        }


def evaluate_scenes(
    model: Model,
    n_classify: int = 1000,
    n_retrieval: int = 1000,
    seed: int = 2026,
    split: str = "test",
    attributes: tuple[str, ...] = ("shape", "color", "size", "position", "background"),
    image_size: int = 64,
    on_step: Callable[[str], None] | None = None,
) -> SceneEvaluation:
    """Zero-shot accuracy per attribute on single-object scenes, and retrieval with full captions
    over 1-2-object scenes, both generated with ``seed`` (use one never used in training).
    ``on_step(description)`` is called before each step (for a progress display)."""
    step = on_step or (lambda description: None)
    step(f"generating {n_classify} single-object scenes")
    singles = single_object_scenes(n_classify, seed, split, image_size)
    step("embedding them")
    single_emb = model.encode_images([r.image for r in singles])
    results = {}
    for attribute in attributes:
        step(f"zero-shot {attribute}")
        results[attribute] = zero_shot_attribute(model, single_emb, singles, attribute)
    step(f"generating {n_retrieval} captioned scenes")
    captioned = retrieval_scenes(n_retrieval, seed, split, image_size)
    step("embedding images and captions")
    image_emb = model.encode_images([r.image for r in captioned])
    text_emb = model.encode_texts([r.caption for r in captioned])
    return SceneEvaluation(split, seed, results, caption_retrieval(image_emb, text_emb), captioned, image_emb, text_emb)
