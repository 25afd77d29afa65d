"""Benchmark runners: zero-shot classification and retrieval over a dataset source.

Each runner returns a CLIP_benchmark-shaped result ``{"dataset", "model", "pretrained", "task",
"metrics": {...}}`` plus a few descriptive keys, and under ``"_details"`` what a report needs
(embeddings, logits, the items). ``public_result`` drops the ``_``-keys, leaving what goes to JSON.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cliplab.errors import InputError
from cliplab.data.items import ImageItem
from cliplab.data.sources import ImageSource, SourceError, open_source
from cliplab.evaluate.metrics import classification_metrics, retrieval_metrics

TASKS = ("zeroshot_classification", "zeroshot_retrieval")
SCENE_ATTRIBUTES = ("shape", "color", "size", "position", "background")


@dataclass
class ClassificationDetails:
    """Per-image results of a classification run, aligned row by row."""

    classes: list[str]
    items: list[ImageItem]
    logits: np.ndarray  # (N, C)
    y: np.ndarray  # (N,) true class indices
    n_unlabelled: int = 0

    @property
    def y_pred(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)


@dataclass
class RetrievalDetails:
    """Embeddings and captions of a retrieval run: text i describes image ``text_to_image[i]``."""

    items: list[ImageItem]
    image_emb: np.ndarray
    text_emb: np.ndarray
    texts: list[str]
    text_to_image: np.ndarray
    ks: tuple[int, ...] = field(default=(1, 5, 10))


# --- datasets ------------------------------------------------------------------------------------
def is_synthetic(spec: str) -> bool:
    head, _, rest = str(spec).partition(":")
    return head in ("synthetic", "synth") and bool(rest)


def open_dataset(spec: str | os.PathLike, attribute: str | None = None) -> ImageSource:
    """``open_source(spec)``; for synthetic scenes with ``attribute``, single-object scenes labelled
    by that attribute of the object (or by the background) with its whole vocabulary as classes."""
    if attribute is None or not is_synthetic(os.fspath(spec)):
        return open_source(spec)
    if attribute not in SCENE_ATTRIBUTES:
        raise SourceError(f"attribute {attribute!r} is not a scene attribute; use one of {', '.join(SCENE_ATTRIBUTES)}")
    if attribute != "background":
        return open_source(spec, attribute=attribute, max_objects=1)
    from cliplab.data import synthetic

    source = open_source(spec, max_objects=1)
    for item in source.items:
        item.label = str(item.meta["background"])
    source.classes = list(synthetic.BACKGROUNDS)
    return source


def scene_templates(attribute: str) -> dict[str, list[str]]:
    """Class-specific prompts for a scene attribute (``{"top left": ["a shape at the top left"]}``),
    the prompts ``cliplab.evaluate.scenes`` uses: each names only that attribute."""
    from cliplab.evaluate.scenes import attribute_classes, attribute_prompts

    return {c: [p] for c, p in zip(attribute_classes(attribute), attribute_prompts(attribute))}


def scene_attribute(source: ImageSource) -> str | None:
    """The attribute a synthetic source was labelled by (``open_dataset``), else None."""
    if not source.name.startswith("synthetic-") or not source.classes:
        return None
    from cliplab.evaluate.scenes import attribute_classes

    return next((a for a in SCENE_ATTRIBUTES if list(source.classes) == attribute_classes(a)), None)


def resolve_classes(source: ImageSource, classnames: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(label vocabulary, names used in prompts), in the same order.

    Without ``classnames`` both are the source's classes. With them: when they contain every label
    of the source they are the vocabulary (extra names are distractor classes); otherwise, when
    there are as many as the source has classes, they rename the source's classes in order.
    """
    labels = {it.label for it in source.items if it.label is not None}
    if not source.classes and not labels:
        raise InputError(
            f"dataset {source.name!r} has no labels; use a folder with one subfolder per class, "
            "a manifest with a label column, or synthetic scenes with an attribute"
        )
    if classnames is None:
        classes = list(source.classes or sorted(labels))
        return classes, classes
    names = [str(c).strip() for c in classnames if str(c).strip()]
    if len(set(names)) != len(names):
        raise InputError("class names must be unique")
    if not names:
        raise InputError("no class names given")
    if labels and labels <= set(names):
        return names, names
    if source.classes and len(names) == len(source.classes):
        return list(source.classes), names
    have = len(source.classes or labels)
    raise InputError(
        f"the {len(names)} class names given neither contain every label of the dataset nor rename "
        f"its {have} classes one by one"
    )


def _source(source: ImageSource | str | os.PathLike) -> tuple[ImageSource, str]:
    if isinstance(source, ImageSource):
        return source, source.name
    return open_dataset(source), os.fspath(source)


def _embed(model, source: ImageSource, batch_size: int | None, cache_dir, num_workers: int | None, progress: bool, decode: str = "auto"):
    from cliplab.features import embed

    feats = embed(model, source, cache_dir=cache_dir, batch_size=batch_size, num_workers=num_workers, progress=progress, decode=decode)
    by_id = {it.id: it for it in source.items}
    return feats, [by_id[i] for i in feats.ids]


def _header(model, dataset: str, task: str, pretrained: str | None) -> dict[str, Any]:
    pre = pretrained if pretrained is not None else getattr(model, "pretrained", None)
    return {"dataset": dataset, "model": model.name, "pretrained": None if pre is None else os.fspath(pre), "task": task}


def public_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result without its ``_``-prefixed keys (what is written to JSON)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


# --- runners ---------------------------------------------------------------------------------------
def run_zeroshot_classification(
    model,
    source: ImageSource | str | os.PathLike,
    templates: Any = None,
    classnames: Sequence[str] | None = None,
    batch_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    dataset: str | None = None,
    pretrained: str | None = None,
    num_workers: int | None = None,
    decode: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Zero-shot classification: ``acc1``, ``acc5`` (more than 5 classes), ``mean_per_class_recall``.

    source: an ``ImageSource`` or a spec for ``open_dataset``; labels come from it, class names from
        its ``classes`` or ``classnames`` (see ``resolve_classes``). Unlabelled images are left out.
    templates: a template spec (``resolve_templates``); None means "default", or for synthetic
        scenes labelled by an attribute, that attribute's prompts (``scene_templates``).
    """
    from cliplab.zeroshot import ZeroShotClassifier

    src, name = _source(source)
    classes, prompt_names = resolve_classes(src, classnames)
    if templates is None:
        attr = scene_attribute(src) if classnames is None else None
        templates = scene_templates(attr) if attr else "default"
    feats, items = _embed(model, src, batch_size, cache_dir, num_workers, progress, decode)
    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, it in enumerate(items) if it.label in index]
    if not keep:
        raise InputError(f"no image of {name!r} has a label among the {len(classes)} classes")
    y = np.array([index[items[i].label] for i in keep], dtype=np.int64)
    clf = ZeroShotClassifier(model, prompt_names, templates).fit()
    logits = clf.decision_function(feats.X[keep])
    metrics = classification_metrics(logits, y, classes)
    per_class = metrics.pop("per_class")
    return {
        **_header(model, dataset or name, "zeroshot_classification", pretrained),
        "metrics": metrics,
        "per_class": per_class,
        "classnames": classes,
        "n_images": len(keep),
        "n_unlabelled": len(items) - len(keep),
        "n_skipped": len(feats.skipped),
        "_details": ClassificationDetails(classes, [items[i] for i in keep], logits, y, len(items) - len(keep)),
    }


def run_zeroshot_retrieval(
    model,
    source: ImageSource | str | os.PathLike,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    dataset: str | None = None,
    pretrained: str | None = None,
    num_workers: int | None = None,
    decode: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Zero-shot retrieval with every caption of every image: ``image_retrieval_recall@k`` (text
    queries) and ``text_retrieval_recall@k`` (image queries), CLIP_benchmark definitions."""
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise InputError(f"recall k values must be integers >= 1, got {list(ks)}")
    src, name = _source(source)
    if not any(it.captions for it in src.items):
        raise InputError(
            f"dataset {name!r} has no captions; retrieval needs a manifest with a caption column, "
            "shards with .txt members, or synthetic scenes"
        )
    feats, items = _embed(model, src, batch_size, cache_dir, num_workers, progress, decode)
    texts = [c for it in items for c in it.captions]
    text_to_image = np.array([i for i, it in enumerate(items) for _ in it.captions], dtype=np.int64)
    if not texts:
        raise InputError(f"no captioned image of {name!r} could be read")
    text_emb = model.encode_texts(texts)
    metrics = retrieval_metrics(feats.X, text_emb, text_to_image, ks)
    return {
        **_header(model, dataset or name, "zeroshot_retrieval", pretrained),
        "metrics": metrics,
        "n_images": len(items),
        "n_texts": len(texts),
        "n_skipped": len(feats.skipped),
        "_details": RetrievalDetails(items, feats.X, text_emb, texts, text_to_image, ks),
    }
