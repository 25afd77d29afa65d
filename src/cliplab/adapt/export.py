"""Export the best head of a comparison with calibrated conformal sets, chosen on data no search saw.

Every method's hyperparameters and epoch were chosen on its validation sets, so validation
accuracy flatters the methods that search most (measured: on a 9-class position task ``linear``
won on validation, 0.556, and scored 31.5% on test while ``cocoop`` scored 42.7%). The choice
between methods is one more search; it is made on selection rows set aside from the training pool
before any draw (:func:`selection_rows`, given to ``Task(selection=...)``), and the chosen method's
accuracy there is what is reported.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from cliplab.adapt._base import label_index
from cliplab.adapt.calibration import ConformalClassifier, TemperatureScaling, mean_set_size, set_coverage
from cliplab.adapt.compare import IMAGE_METHODS, Task, best_method, draw_split, fit_head
from cliplab.data.few_shot import SELECTION_FRACTION, SELECTION_SEED, stratified_split
from cliplab.errors import InputError



def selection_rows(y_pool: np.ndarray, fraction: float = SELECTION_FRACTION, seed: int = SELECTION_SEED) -> np.ndarray:
    """``fraction`` of each class of the pool (at least one row of every class with two or more)."""
    return stratified_split(y_pool, fraction, seed, "selection fraction", keep_one=True)[1]


def export_best(task: Task, records: Sequence[dict], path: str | os.PathLike, *, alpha: float = 0.1,
                epochs: int | None = None, method: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Fit ``method``, else the exportable method of ``records`` with the best selection accuracy, at
    the most shots (first seed); fit a temperature on one half of the pool rows used for neither
    training, validation nor selection (the validation rows when none are left) and the conformal
    quantile on the other half; save to ``path``. Returns what was exported and how it scored."""
    if not len(task.selection):
        raise InputError("exporting chooses on selection rows no search saw; build the Task with selection=selection_rows(y_pool)")
    exportable = [m for m in dict.fromkeys(r["method"] for r in records) if m not in IMAGE_METHODS]
    if method is None:
        method = best_method(records, exportable)
    elif method not in exportable:
        raise InputError(f"method {method!r} is not among the exportable methods compared: {', '.join(exportable)}")
    k = max(r["shots"] for r in records)
    runs = [r for r in records if r["method"] == method and r["shots"] == k]
    seed = runs[0]["seed"]
    train, val = draw_split(task.y_pool, k, seed, task.selection)
    head = fit_head(method, task, train, val, seed, epochs)
    rest = np.setdiff1d(np.arange(len(task.y_pool)), np.concatenate([train, val, task.selection]))
    cal = rest if len(rest) else val
    # temperature on one half, conformal quantile on the other: LAC sets need calibrated probabilities
    # (a strongly regularised probe gives near-uniform ones and every set would hold every class)
    halves = np.array_split(np.random.default_rng(seed).permutation(cal), 2) if len(cal) >= 2 * len(task.classes) else (cal, cal)
    scaled = TemperatureScaling(head).fit(task.X_pool[halves[0]], task.y_pool[halves[0]])
    conformal = ConformalClassifier(scaled, alpha=alpha, method="lac").fit(task.X_pool[halves[1]], task.y_pool[halves[1]])
    sets = conformal.predict_set(task.X_test)
    conformal.save(path)
    return {
        "method": method, "shots": k, "seed": seed,
        "selection_accuracy": float(np.mean([r["selection_accuracy"] for r in runs])),
        "selection_images": int(len(task.selection)),
        "val_accuracy": float(np.mean([r["val_accuracy"] for r in runs])),
        "calibration_images": int(len(cal)), "temperature": scaled.temperature_, "alpha": alpha,
        "coverage": set_coverage(sets, label_index(task.y_test, conformal.classes_, len(task.y_test))),
        "mean_set_size": mean_set_size(sets), "file": str(path),
    }  # fmt: skip


def describe_export(info: dict[str, Any]) -> str:
    """One line on what :func:`export_best` did."""
    return (
        f"exported {info['method']} ({info['shots']} shots) to {info['file']}: selection accuracy "
        f"{info['selection_accuracy']:.3f} on {info['selection_images']} images no search saw "
        f"(validation {info['val_accuracy']:.3f}); on test, sets at alpha={info['alpha']} cover "
        f"{info['coverage']:.3f} with {info['mean_set_size']:.2f} classes on average"
    )
