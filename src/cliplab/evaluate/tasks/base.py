"""What every task shares: its result type, how images are embedded, and zero-shot predictions."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cliplab.data.items import ImageItem
from cliplab.data.sources import ImageSource
from cliplab.errors import InputError

if TYPE_CHECKING:
    from cliplab.features import Features

HIDDEN = {"json": False}  # field metadata: kept on the result for reports and plots, not written to JSON


@dataclass
class TaskResult:
    """A task's outcome, CLIP_benchmark-shaped: ``dataset``, ``model``, ``pretrained``, ``task``,
    ``metrics``, plus the effective ``precision``; subclasses add their own fields. Fields declared with ``metadata=HIDDEN`` (arrays,
    images) stay out of ``to_json()``."""

    dataset: str
    model: str
    pretrained: str | None
    precision: str
    task: str
    metrics: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every non-hidden field (nested results and numpy values converted)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get("json", True)}


def _plain(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def header(model, dataset: str, task: str, pretrained: str | None = None) -> dict[str, Any]:
    pre = pretrained if pretrained is not None else getattr(model, "pretrained", None)
    return {"dataset": dataset, "model": model.name, "pretrained": None if pre is None else os.fspath(pre),
            "precision": getattr(model, "precision", "fp32"), "task": task}  # fmt: skip


@dataclass
class EmbedOptions:
    """How collections are embedded (``cliplab.embed`` arguments)."""

    batch_size: int | None = None  # None: the device's default (:meth:`batch_size_for`)
    cache_dir: str | os.PathLike | None = None
    num_workers: int | None = None
    progress: bool = False
    decode: str = "auto"

    def batch_size_for(self, model) -> int:
        """The batch size to use with ``model``: the one given, else its device's default."""
        from cliplab.features.pipeline import default_batch_size

        return self.batch_size or default_batch_size(model.device)


def open_images(spec: ImageSource | str | os.PathLike, attribute: str | None = None, labelled: bool = False) -> tuple[ImageSource, str]:
    """(source, its display name) for a source or a spec. Synthetic scenes are labelled by
    ``attribute`` (for a ``labelled`` task, default shape); ``attribute`` given for any other source
    is an error."""
    from cliplab.evaluate.runner import is_synthetic, open_dataset

    if isinstance(spec, ImageSource):
        return spec, spec.name
    if labelled and attribute is None and is_synthetic(os.fspath(spec)):
        attribute = "shape"
    return open_dataset(spec, attribute=attribute), os.fspath(spec)


def embed_features(model, source: ImageSource, opts: EmbedOptions | None = None) -> tuple[Features, list[ImageItem]]:
    """(the ``Features`` of ``source``, the items they belong to, in order); unreadable images left out."""
    from cliplab.features import embed

    opts = opts or EmbedOptions()
    feats = embed(model, source, cache_dir=opts.cache_dir, batch_size=opts.batch_size, num_workers=opts.num_workers, progress=opts.progress, decode=opts.decode)
    by_id = {it.id: it for it in source.items}
    return feats, [by_id[i] for i in feats.ids]


def embed_source(model, source: ImageSource, opts: EmbedOptions) -> tuple[np.ndarray, list[ImageItem]]:
    """(L2-normalised image embeddings, the items they belong to, in order); unreadable images left out."""
    feats, items = embed_features(model, source, opts)
    return feats.X, items


@dataclass
class ZeroShotRun:
    """Zero-shot predictions over the labelled images of a source, row-aligned."""

    classes: list[str]
    head: Any  # the fitted ZeroShotClassifier
    X: np.ndarray = field(repr=False)
    y: np.ndarray
    items: list[ImageItem] = field(repr=False)

    @property
    def logits(self) -> np.ndarray:
        return self.head.class_scores(self.X)

    @property
    def cosines(self) -> np.ndarray:
        return self.X @ self.head.text_weights_.T


def zeroshot(
    model, source: ImageSource, opts: EmbedOptions, classnames: Sequence[str] | None = None, templates: Any = None
) -> ZeroShotRun:
    """Embed ``source`` and build its zero-shot head; keeps the images whose label is a class."""
    from cliplab.evaluate.runner import zeroshot_head

    classes, head = zeroshot_head(model, source, templates, classnames)
    X, items = embed_source(model, source, opts)
    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, it in enumerate(items) if it.label in index]
    if not keep:
        raise InputError(f"no image of {source.name!r} has a label among the {len(classes)} classes")
    y = np.array([index[items[i].label] for i in keep], dtype=np.int64)
    return ZeroShotRun(classes, head, X[keep], y, [items[i] for i in keep])
