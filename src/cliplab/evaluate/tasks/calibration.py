"""Calibration of zero-shot probabilities, before and after temperature scaling.

The labelled images are split (stratified, seeded) into a validation part, on which the temperature
is fitted by NLL, and a test part, on which every metric is measured both ways.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cliplab.data.few_shot import stratified_split
from cliplab.data.sources import ImageSource
from cliplab.errors import InputError
from cliplab.evaluate import task_plots
from cliplab.evaluate.calibration import (
    ReliabilityBins,
    calibration_metrics,
    fit_temperature,
    reliability_bins,
    softmax,
)
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import (
    HIDDEN,
    EmbedOptions,
    TaskResult,
    header,
    open_images,
    zeroshot,
)


@dataclass
class CalibrationResult(TaskResult):
    n_val: int = 0
    n_test: int = 0
    n_bins: int = 15
    before: ReliabilityBins | None = field(default=None, metadata=HIDDEN)
    after: ReliabilityBins | None = field(default=None, metadata=HIDDEN)


def split_indices(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, test) indices: ``val_fraction`` of each class to validation, rounded, seeded."""
    test, val = stratified_split(y, val_fraction, seed, "the validation fraction")
    if not len(val) or not len(test):
        raise InputError(f"{len(y)} labelled images are too few to split into validation and test")
    return val, test


def run_calibration(
    model,
    images: ImageSource | str | os.PathLike,
    classnames: Sequence[str] | None = None,
    templates: Any = None,
    opts: EmbedOptions | None = None,
    *,
    attribute: str | None = None,
    n_bins: int = 15,
    val_fraction: float = 0.5,
    seed: int = 0,
    pretrained: str | None = None,
) -> CalibrationResult:
    """``metrics``: ``acc1`` and ``temperature``, and under ``before`` / ``after`` (temperature
    scaling): ``ece``, ``ece_equal_mass``, ``mce``, ``brier``, ``nll`` on the test part."""
    src, name = open_images(images, attribute, labelled=True)
    run = zeroshot(model, src, opts or EmbedOptions(), classnames, templates)
    logits = run.logits.astype(np.float64)
    val, test = split_indices(run.y, val_fraction, seed)
    t = fit_temperature(logits[val], run.y[val])
    p_before, p_after = softmax(logits[test]), softmax(logits[test], t)
    y = run.y[test]
    metrics = {
        "acc1": float(np.mean(p_before.argmax(1) == y)),
        "temperature": t,
        "before": calibration_metrics(p_before, y, n_bins),
        "after": calibration_metrics(p_after, y, n_bins),
    }
    return CalibrationResult(
        **header(model, name, "calibration", pretrained), metrics=metrics, n_val=len(val), n_test=len(test), n_bins=n_bins,
        before=reliability_bins(p_before, y, n_bins), after=reliability_bins(p_after, y, n_bins),
    )  # fmt: skip


def report(result: CalibrationResult) -> Report:
    m = result.metrics
    rep = Report(f"Calibration: {result.model} on {result.dataset}", f"temperature fitted on {result.n_val} images, measured on {result.n_test}")
    rep.add_table("Summary", {"acc1": m["acc1"], "temperature": m["temperature"]})
    rep.add_table("Before and after temperature scaling", [{"metric": k, "before": m["before"][k], "after": m["after"][k]} for k in m["before"]])
    if result.before is not None and result.after is not None:
        panels = {"before": result.before, f"after (T = {m['temperature']:.3g})": result.after}
        rep.add_figure("Reliability diagram", task_plots.reliability_diagram_png(panels), caption=f"{result.n_bins} equal-width bins [lower, upper)")
    return rep
