"""The few-shot comparison behind ``cliplab adapt``: every method x shots x seeds on embeddings computed once.

Protocol (CoOp's): for each (shots K, seed) draw K training images per class from the training
pool and a separate validation set of min(K, 4) per class from the rest of the pool; every
hyperparameter search and early stop uses that validation set only; accuracy is measured on the
test set, which no search sees. Choosing which method to export is a search too, over methods:
it uses ``Task.selection``, pool rows set aside before any draw (``cliplab.adapt.export``), since
the validation sets already chose each method's hyperparameters and flatter the method that
overfits them most.
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
from cliplab.adapt.support import SupportSetAdapter
from cliplab.adapt.svd import CLIPSVD
from cliplab.adapt.tip import TipAdapter, TipAdapterF
from cliplab.data.few_shot import augmented_views, few_shot_split
from cliplab.errors import InputError, spelled

METHODS = ("zeroshot", "gda", "tip", "tip-f", "support", "linear", "coop", "cocoop", "svd")
IMAGE_METHODS = ("svd",)  # methods that tune the image tower: they take images, not embeddings
HYPERPARAMETERS = ("alpha_", "beta_", "gamma_", "C_", "ensemble_weight_", "best_epoch_", "epochs_run_")
MAX_VAL_SHOTS = 4


@dataclass
class Task:
    """Everything one comparison needs. ``y_*`` are string labels; ``classes`` their sorted set;
    ``text_weights`` (C x D) the zero-shot weights in that order. ``pool_images(rows)`` and
    ``test_images()`` decode images (needed by CLIP-SVD and by augmented views). ``selection``:
    pool rows no draw ever takes, on which every run is also scored (empty: none)."""

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
    selection: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
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


def check_classes(labels: Sequence[Any], what: str, min_classes: int = 2) -> None:
    """At least ``min_classes`` classes among the labelled rows (with one, every method scores 100%);
    unlabelled rows (``None``) are not counted: the heads use the labelled ones."""
    found = sorted({str(lab) for lab in labels if lab is not None})
    if len(found) < min_classes:
        named = f"only class {found[0]!r}" if found else "no labelled images"
        one_class = ""
        if len(found) == 1:
            how = spelled("cliplab.adapt.fit_detector", "cliplab inspect fit")
            one_class = f"; to flag what differs from good images only, fit a one-class detector: {how}"
        raise InputError(f"{what} has {named}; comparing classifiers needs at least {min_classes} classes (one subfolder per class){one_class}")


def check_pool(y_pool: np.ndarray, shots: int, exclude: np.ndarray) -> None:
    """At least two classes, and in each ``shots`` training rows plus one for validation outside ``exclude``."""
    check_classes(y_pool.tolist(), "the training pool")
    usable = np.ones(len(y_pool), bool)
    usable[exclude] = False
    classes, counts = np.unique(y_pool[usable], return_counts=True)
    missing = sorted(set(y_pool.tolist()) - set(classes.tolist()))
    fewest, n = (missing[0], 0) if missing else (classes[np.argmin(counts)], int(counts.min()))
    if n < shots + 1:
        raise InputError(
            f"{shots} shots need {shots + 1} labelled images of every class in the training pool ({shots} to train, "
            f"1 or more to validate; held-out test and selection images excluded) but class {str(fewest)!r} has {n}; "
            "use fewer shots or add images"
        )


def draw_split(y_pool: np.ndarray, shots: int, seed: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): K per class, then min(K, 4) per class from the remaining rows;
    rows in ``exclude`` are never drawn."""
    exclude = np.zeros(0, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = few_shot_split(y_pool, shots, seed, exclude=exclude)
        val = few_shot_split(y_pool, min(shots, MAX_VAL_SHOTS), seed + 10_000, exclude=np.concatenate([exclude, train]))
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
        "support": lambda: SupportSetAdapter(**zs, random_state=seed),
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
    views = task.views(train) if method in ("gda", "tip", "tip-f", "support") else None
    if views is None:
        return head.fit(X, y, X_val, y_val)
    if method == "gda":  # every view is a sample (reference a)
        return head.fit(views.reshape(-1, views.shape[-1]), np.repeat(y, views.shape[1]), X_val, y_val)
    if method in ("tip", "support"):  # keys / support items = the views averaged (reference b)
        return head.fit(average_views(views), y, X_val, y_val)
    return head.fit(average_views(views), y, X_val, y_val, views=views)


def pool_accuracy(head, method: str, task: Task, rows: np.ndarray) -> float:
    """Accuracy of a fitted head on pool rows (their images for the image-tower methods)."""
    if method in IMAGE_METHODS:
        return float(head.score(task.pool_images(rows), task.y_pool[rows]))
    return float(head.score(task.X_pool[rows], task.y_pool[rows]))


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


def check_methods(methods: Sequence[str]) -> None:
    """Every name one of ``METHODS``, and at least one."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; use some of {', '.join(METHODS)}")


def run_comparison(task: Task, methods: Sequence[str], shots: Sequence[int], seeds: Sequence[int],
                   epochs: int | None = None, on_result: Callable[[dict], None] | None = None) -> list[dict]:  # fmt: skip
    """One record per (method, shots, seed): accuracy on test, validation accuracy, accuracy on the
    task's selection rows (None without them), hyperparameters, fit time."""
    check_methods(methods)
    check_pool(task.y_pool, max(shots), task.selection)
    test_images = task.test_images() if any(m in IMAGE_METHODS for m in methods) else None
    records = []
    for k in shots:
        for seed in seeds:
            train, val = draw_split(task.y_pool, k, seed, task.selection)
            for method in methods:
                start = time.perf_counter()
                head = fit_head(method, task, train, val, seed, epochs)
                fit_seconds = time.perf_counter() - start
                selection = pool_accuracy(head, method, task, task.selection) if len(task.selection) else None
                record = {
                    "method": method, "shots": int(k), "seed": int(seed),
                    "accuracy": accuracy(head, method, task, test_images), "val_accuracy": pool_accuracy(head, method, task, val),
                    "selection_accuracy": selection,
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
    """The method with the best mean **selection** accuracy at the largest shot count (ties: first).

    Not the validation accuracy: every method already chose its hyperparameters and epoch on the
    validation set, so its score there is optimistic, the more so the more the method searched."""
    top = max(r["shots"] for r in records)
    scores: dict[str, list[float]] = {}
    for r in records:
        if r["shots"] == top and r["method"] in exportable:
            if r.get("selection_accuracy") is None:
                raise InputError("choosing the best method needs runs scored on selection rows; build the Task with selection=")
            scores.setdefault(r["method"], []).append(r["selection_accuracy"])
    if not scores:
        raise InputError(f"none of the methods run can be exported ({', '.join(exportable)})")
    return max(scores, key=lambda m: np.mean(scores[m]))
