"""Benchmark runners: zero-shot classification and retrieval over a dataset source.

Each runner returns a typed result (``ClassificationResult``, ``RetrievalResult``) whose
``to_json()`` is CLIP_benchmark-shaped (``dataset, model, pretrained, task, metrics``) plus what was
run (templates, attribute, precision, cliplab version); ``details`` holds what a report needs
(embeddings, logits, the items) and never goes to JSON.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from cliplab.data.items import ImageItem
from cliplab.data.sources import ImageSource, SourceError, open_source
from cliplab.errors import InputError, how_to_pass, warn
from cliplab.evaluate.metrics import classification_metrics, retrieval_metrics
from cliplab.evaluate.tasks.base import EmbedOptions, embed_features
from cliplab.features import Features

TASKS = ("zeroshot_classification", "zeroshot_retrieval")


@dataclass
class ClassificationDetails:
    """Per-image results of a classification run, aligned row by row."""

    classes: list[str]
    items: list[ImageItem]
    logits: np.ndarray  # (N, C)
    y: np.ndarray  # (N,) true class indices
    features: Features  # every embedded image, with what was skipped and the source's notes
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
    features: Features  # every embedded image, with what was skipped and the source's notes
    ks: tuple[int, ...] = field(default=(1, 5, 10))


# --- datasets ------------------------------------------------------------------------------------
def is_synthetic(spec: str) -> bool:
    head, _, rest = str(spec).partition(":")
    return head in ("synthetic", "synth") and bool(rest)


def open_dataset(spec: str | os.PathLike, attribute: str | None = None, **kw: Any) -> ImageSource:
    """``open_source(spec, **kw)``; with ``attribute``, synthetic scenes with one object each,
    labelled by that attribute (see ``synthetic_source``). ``attribute`` on any other source is an error."""
    if attribute is None:
        return open_source(spec, **kw)
    if not is_synthetic(os.fspath(spec)):
        raise SourceError(
            f"{how_to_pass('attribute')} applies to synthetic scenes only; {os.fspath(spec)!r} takes its labels from the data"
        )
    return open_source(spec, attribute=attribute, max_objects=1, **kw)


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


def run_facts(model, dataset: str, pretrained: str | None) -> dict[str, Any]:
    """What every result records about the run: dataset, model, weights, precision, cliplab version."""
    from cliplab import __version__

    pre = pretrained if pretrained is not None else getattr(model, "pretrained", None)
    return {
        "dataset": dataset,
        "model": model.name,
        "pretrained": None if pre is None else os.fspath(pre),
        "precision": getattr(model, "precision", "fp32"),
        "cliplab_version": __version__,
    }


NOT_IN_JSON = {"json": False}  # field metadata: what a report needs but the JSON results leave out


@dataclass
class RunResult:
    """What every runner result records about the run; ``to_json()`` leaves out fields marked ``NOT_IN_JSON``."""

    dataset: str
    model: str
    pretrained: str | None
    precision: str
    cliplab_version: str

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("json", True)}


@dataclass
class ClassificationResult(RunResult):
    """A zero-shot classification run: CLIP_benchmark fields plus what was run; ``details`` for reports."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    classnames: list[str]
    templates: str | list[str] | dict[str, list[str]]
    attribute: str | None
    n_images: int
    n_unlabelled: int
    n_skipped: int
    details: ClassificationDetails = field(repr=False, metadata=NOT_IN_JSON)
    task: str = "zeroshot_classification"


@dataclass
class RetrievalResult(RunResult):
    """A zero-shot retrieval run: CLIP_benchmark fields plus what was run; ``details`` for reports."""

    metrics: dict[str, float]
    n_images: int
    n_texts: int
    n_skipped: int
    details: RetrievalDetails = field(repr=False, metadata=NOT_IN_JSON)
    task: str = "zeroshot_retrieval"


def describe_templates(templates: Any) -> str | list[str] | dict[str, list[str]]:
    """Templates as JSON can hold them: a set name or file as given, lists and dicts as they are."""
    if isinstance(templates, (str, os.PathLike)):
        return os.fspath(templates)
    if isinstance(templates, dict):
        return {str(k): list(v) for k, v in templates.items()}
    return [str(t) for t in templates]


def zeroshot_head(model, source: ImageSource, templates: Any = None, classnames: Sequence[str] | None = None):
    """(label vocabulary, fitted ``ZeroShotClassifier``) for a labelled source: class names from
    ``resolve_classes``; templates None means the source's own templates when it has them
    (synthetic scenes labelled by an attribute), else "default"."""
    from cliplab.zeroshot import ZeroShotClassifier

    classes, prompt_names = resolve_classes(source, classnames)
    if templates is None:
        templates = source.templates if source.templates and classnames is None else "default"
    return classes, ZeroShotClassifier(model, prompt_names, templates).fit()


# --- runners ---------------------------------------------------------------------------------------
def run_zeroshot_classification(
    model,
    source: ImageSource | str | os.PathLike,
    templates: Any = None,
    classnames: Sequence[str] | None = None,
    opts: EmbedOptions | None = None,
    *,
    dataset: str | None = None,
    pretrained: str | None = None,
) -> ClassificationResult:
    """Zero-shot classification: ``acc1``, ``acc5`` (more than 5 classes), ``mean_per_class_recall``.

    source: an ``ImageSource`` or a spec for ``open_dataset``; labels come from it, class names from
        its ``classes`` or ``classnames`` (see ``resolve_classes``). Unlabelled images are left out.
    templates: a template spec (``resolve_templates``); None means the source's own templates when
        it has them (synthetic scenes labelled by an attribute), else "default".
    A dataset with a single class gets a warning: its accuracy is trivially 1.0.
    """
    src, name = _source(source)
    classes, clf = zeroshot_head(model, src, templates, classnames)
    if len(classes) == 1:
        warn(f"dataset {name!r} has a single class ({classes[0]!r}): its accuracy is trivially 1.0")
    feats, items = embed_features(model, src, opts)
    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, it in enumerate(items) if it.label in index]
    if not keep:
        raise InputError(f"no image of {name!r} has a label among the {len(classes)} classes")
    y = np.array([index[items[i].label] for i in keep], dtype=np.int64)
    logits = clf.class_scores(feats.X[keep])
    metrics = classification_metrics(logits, y, classes)
    per_class = metrics.pop("per_class")
    return ClassificationResult(
        **run_facts(model, dataset or name, pretrained),
        metrics=metrics,
        per_class=per_class,
        classnames=classes,
        templates=describe_templates(clf.templates),
        attribute=_scene_attribute(src),
        n_images=len(keep),
        n_unlabelled=len(items) - len(keep),
        n_skipped=len(feats.skipped),
        details=ClassificationDetails(classes, [items[i] for i in keep], logits, y, feats, len(items) - len(keep)),
    )


def _scene_attribute(source: ImageSource) -> str | None:
    """The attribute a synthetic source is labelled by (its items' labels name it), else None."""
    from cliplab.data import synthetic

    if not source.templates or not source.classes:
        return None
    return next((a for a in synthetic.ATTRIBUTES if synthetic.attribute_values(a) == list(source.classes)), None)


def crosslingual_metrics(model, texts: Sequence[str], english: Sequence[str], ks: Sequence[int] = (1, 5, 10),
                         text_emb: np.ndarray | None = None) -> dict[str, float]:  # fmt: skip
    """Cross-lingual text->text retrieval: caption i (any language) queries the English captions and
    should find ``english[i]`` (equal English texts count as one target: ranks over distinct texts).
    ``crosslingual_recall@k``, CLIP_benchmark's recall definition."""
    unique = list(dict.fromkeys(english))
    where = {t: i for i, t in enumerate(unique)}
    query = model.encode_texts(list(texts)) if text_emb is None else text_emb
    found = retrieval_metrics(model.encode_texts(unique), query, np.array([where[e] for e in english]), ks)
    return {f"crosslingual_recall@{k}": found[f"image_retrieval_recall@{k}"] for k in ks}


def run_zeroshot_retrieval(
    model,
    source: ImageSource | str | os.PathLike,
    ks: Sequence[int] = (1, 5, 10),
    opts: EmbedOptions | None = None,
    *,
    dataset: str | None = None,
    pretrained: str | None = None,
) -> RetrievalResult:
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
    feats, items = embed_features(model, src, opts)
    texts = [c for it in items for c in it.captions]
    text_to_image = np.array([i for i, it in enumerate(items) for _ in it.captions], dtype=np.int64)
    if not texts:
        raise InputError(f"no captioned image of {name!r} could be read")
    text_emb = model.encode_texts(texts)
    metrics = retrieval_metrics(feats.X, text_emb, text_to_image, ks)
    english = [it.meta.get("english_caption") for it in items]
    if all(isinstance(e, str) for e in english) and all(len(it.captions) == 1 for it in items):
        metrics.update(crosslingual_metrics(model, texts, english, ks, text_emb))
    return RetrievalResult(
        **run_facts(model, dataset or name, pretrained),
        metrics=metrics,
        n_images=len(items),
        n_texts=len(texts),
        n_skipped=len(feats.skipped),
        details=RetrievalDetails(items, feats.X, text_emb, texts, text_to_image, feats, ks),
    )
