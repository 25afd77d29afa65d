"""The few-shot comparison behind ``cliplab adapt``: every method x shots x seeds on embeddings computed once.

Protocol (CoOp's): for each (shots K, seed) draw K training images per class from the training
pool and a separate validation set of min(K, 4) per class from the rest of the pool; every
hyperparameter search and early stop uses that validation set only; accuracy is measured on the
test set, which no search sees.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from cliplab.adapt.fixed import TextWeightsHead
from cliplab.adapt.gda import GDA
from cliplab.adapt.linear import LinearProbe
from cliplab.adapt.prompt import CoCoOp, CoOp
from cliplab.adapt.svd import CLIPSVD
from cliplab.adapt.tip import TipAdapter, TipAdapterF
from cliplab.data.few_shot import augmented_views, few_shot_split
from cliplab.errors import InputError

METHODS = ("zeroshot", "gda", "tip", "tip-f", "linear", "coop", "cocoop", "svd")
IMAGE_METHODS = ("svd",)  # methods that tune the image tower: they take images, not embeddings
HYPERPARAMETERS = ("alpha_", "beta_", "C_", "ensemble_weight_", "best_epoch_", "epochs_run_")
MAX_VAL_SHOTS = 4


@dataclass
class Task:
    """Everything one comparison needs. ``y_*`` are string labels; ``classes`` their sorted set;
    ``text_weights`` (C x D) the zero-shot weights in that order. ``pool_images(rows)`` and
    ``test_images()`` decode images (needed by CLIP-SVD and by augmented views)."""

    model: Any
    X_pool: np.ndarray
    y_pool: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    class_texts: list[str]
    text_weights: np.ndarray
    pool_images: Callable[[Sequence[int]], list[Image.Image]] | None = None
    test_images: Callable[[], list[Image.Image]] | None = None
    n_views: int = 0
    view_seed: int = 0
    _views: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def views(self, rows: np.ndarray) -> np.ndarray | None:
        """(len(rows), n_views, D) embeddings of augmented views (random-resized-crop + flip), memoised."""
        if not self.n_views or self.pool_images is None:
            return None
        todo = [int(r) for r in rows if int(r) not in self._views]
        if todo:
            images = augmented_views(self.pool_images(todo), self.n_views, self.view_seed)
            flat = self.model.encode_images([v for per in images for v in per])
            for i, r in enumerate(todo):
                self._views[r] = flat[i * self.n_views : (i + 1) * self.n_views]
        return np.stack([self._views[int(r)] for r in rows])


def average_views(views: np.ndarray) -> np.ndarray:
    """Mean over the views of each image, re-normalised (Tip-Adapter's cache keys; the reference
    averages the unnormalised features, which are not kept here)."""
    mean = views.mean(axis=1)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def draw_split(y_pool: np.ndarray, shots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): K per class, then min(K, 4) per class from the remaining rows."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = few_shot_split(y_pool, shots, seed)
        val = few_shot_split(y_pool, min(shots, MAX_VAL_SHOTS), seed + 10_000, exclude=train)
    for w in caught[:1]:
        warnings.warn(f"{shots} shots, seed {seed}: {w.message}", UserWarning, stacklevel=2)
    return train, val


def build_head(method: str, task: Task, seed: int, epochs: int | None = None):
    """An unfitted head for ``method`` with the task's zero-shot weights and the reference defaults."""
    zs = dict(text_weights=task.text_weights, logit_scale=task.model.logit_scale)
    names = dict(zip(task.classes.tolist(), task.class_texts))
    trained = {} if epochs is None else {"epochs": epochs}
    heads = {
        "zeroshot": lambda: TextWeightsHead(**zs),
        "gda": lambda: GDA(**zs),
        "tip": lambda: TipAdapter(**zs),
        "tip-f": lambda: TipAdapterF(**zs, random_state=seed, **trained),
        "linear": lambda: LinearProbe(random_state=seed),
        "coop": lambda: CoOp(task.model, classnames=names, n_ctx=4, ctx_init="a photo of a", random_state=seed, **trained),
        "cocoop": lambda: CoCoOp(task.model, classnames=names, random_state=seed, **trained),
        "svd": lambda: CLIPSVD(task.model, classnames=names, logit_scale=task.model.logit_scale, random_state=seed, **trained),
    }
    if method not in heads:
        raise InputError(f"unknown method {method!r}; use some of {', '.join(METHODS)}")
    return heads[method]()


def fit_head(method: str, task: Task, train: np.ndarray, val: np.ndarray, seed: int, epochs: int | None = None):
    """Fit ``method`` on the training rows, searching/stopping on the validation rows."""
    head = build_head(method, task, seed, epochs)
    y, y_val = task.y_pool[train], task.y_pool[val]
    if method in IMAGE_METHODS:
        if task.pool_images is None:
            raise InputError(f"{method} tunes the image tower and needs the images, not only their embeddings")
        return head.fit(task.pool_images(train), y, task.pool_images(val), y_val)
    X, X_val = task.X_pool[train], task.X_pool[val]
    views = task.views(train) if method in ("gda", "tip", "tip-f") else None
    if views is None:
        return head.fit(X, y, X_val, y_val)
    if method == "gda":  # every view is a sample (reference a)
        return head.fit(views.reshape(-1, views.shape[-1]), np.repeat(y, views.shape[1]), X_val, y_val)
    if method == "tip":  # keys = the views averaged (reference b)
        return head.fit(average_views(views), y, X_val, y_val)
    return head.fit(average_views(views), y, X_val, y_val, views=views)


def accuracy(head, method: str, task: Task, test_images: list[Image.Image] | None) -> float:
    if method in IMAGE_METHODS:
        return float(head.score(test_images, task.y_test))
    return float(head.score(task.X_test, task.y_test))


def hyperparameters(head) -> dict[str, Any]:
    """The chosen hyperparameters of a fitted head (the ones it has)."""
    out = {}
    for name in HYPERPARAMETERS:
        value = getattr(head, name, None)
        if isinstance(value, (int, float, np.integer, np.floating)):
            out[name.rstrip("_")] = value.item() if hasattr(value, "item") else value
    return out


def run_comparison(task: Task, methods: Sequence[str], shots: Sequence[int], seeds: Sequence[int],
                   epochs: int | None = None, on_result: Callable[[dict], None] | None = None) -> list[dict]:  # fmt: skip
    """One record per (method, shots, seed): accuracy on test, validation accuracy, hyperparameters, fit time."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; use some of {', '.join(METHODS)}")
    test_images = task.test_images() if any(m in IMAGE_METHODS for m in methods) else None
    records = []
    for k in shots:
        for seed in seeds:
            train, val = draw_split(task.y_pool, k, seed)
            for method in methods:
                start = time.perf_counter()
                head = fit_head(method, task, train, val, seed, epochs)
                fit_seconds = time.perf_counter() - start
                val_images = task.pool_images(val) if method in IMAGE_METHODS else None
                val_acc = float(head.score(val_images, task.y_pool[val])) if method in IMAGE_METHODS else float(head.score(task.X_pool[val], task.y_pool[val]))
                record = {
                    "method": method, "shots": int(k), "seed": int(seed),
                    "accuracy": accuracy(head, method, task, test_images), "val_accuracy": val_acc,
                    "hyperparameters": hyperparameters(head), "fit_seconds": round(fit_seconds, 3),
                }  # fmt: skip
                records.append(record)
                if on_result:
                    on_result(record)
    return records


def summarise(records: Sequence[dict]) -> dict[str, dict[int, tuple[float, float]]]:
    """method -> shots -> (mean, std) of test accuracy over seeds."""
    out: dict[str, dict[int, list[float]]] = {}
    for r in records:
        out.setdefault(r["method"], {}).setdefault(r["shots"], []).append(r["accuracy"])
    return {m: {k: (float(np.mean(v)), float(np.std(v))) for k, v in per.items()} for m, per in out.items()}


def best_method(records: Sequence[dict], exportable: Sequence[str]) -> str:
    """The method with the best mean **validation** accuracy at the largest shot count (ties: first)."""
    top = max(r["shots"] for r in records)
    scores: dict[str, list[float]] = {}
    for r in records:
        if r["shots"] == top and r["method"] in exportable:
            scores.setdefault(r["method"], []).append(r["val_accuracy"])
    if not scores:
        raise InputError(f"none of the methods run can be exported ({', '.join(exportable)})")
    return max(scores, key=lambda m: np.mean(scores[m]))
