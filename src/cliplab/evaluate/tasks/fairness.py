"""Subgroup fairness of zero-shot classification: per-group accuracy and error rates with bootstrap
intervals, gaps between groups, and whether the embedding encodes the group.

A group column is a metadata field of each image: a manifest column, or for synthetic scenes the
``background`` or an attribute of the first object (``color``, ``size``, ``position``, ``shape``).
With several columns each is measured alone and their intersection ("a&b") as one more column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cliplab.data.items import ImageItem
from cliplab.data.sources import ImageSource
from cliplab.errors import InputError
from cliplab.evaluate import task_plots
from cliplab.evaluate.calibration import softmax
from cliplab.evaluate.fairness import (
    GroupStats,
    demographic_parity_difference,
    equalized_odds_difference,
    group_auroc,
    group_predictability,
    group_stats,
    max_gap,
)
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import (
    EmbedOptions,
    TaskResult,
    embed_source,
    header,
    open_images,
    zeroshot,
)


@dataclass
class ColumnFairness:
    """The figures of one group column."""

    column: str
    groups: list[GroupStats]  # empty for multi-label data (no single prediction to be right or wrong)
    max_gap: float | None
    equalized_odds_difference: float | None
    demographic_parity_difference: float | None
    group_predictability: float  # balanced accuracy of a linear probe predicting the group (groups of 2+ images)
    chance: float  # 1 / number of groups
    auroc: dict[str, dict[str, float]] = field(default_factory=dict)  # group -> class or label, and "macro" -> AUROC

    def figures(self) -> dict[str, float]:
        figures = {
            "max_gap": self.max_gap,
            "macro_auroc_gap": max_gap({g: a["macro"] for g, a in self.auroc.items()}),
            "equalized_odds_difference": self.equalized_odds_difference,
            "demographic_parity_difference": self.demographic_parity_difference,
            "group_predictability": self.group_predictability,
            "group_predictability_chance": self.chance,
        }
        return {k: v for k, v in figures.items() if v is not None}


@dataclass
class FairnessResult(TaskResult):
    classes: list[str] = field(default_factory=list)
    columns: list[ColumnFairness] = field(default_factory=list)
    n_images: int = 0


def group_value(item: ImageItem, column: str) -> str:
    """The item's value in ``column``: a metadata field, else an attribute of its first scene object."""
    if column in item.meta and item.meta[column] not in (None, ""):
        return str(item.meta[column])
    objects = item.meta.get("objects")
    if objects and column in objects[0]:
        return str(objects[0][column])
    raise InputError(f"image {item.id!r} has no value for group column {column!r}; name a column of the manifest (or background/color/size/position for synthetic scenes)")


LABEL_SEPARATOR = "|"


def label_sets(items: Sequence[ImageItem], classnames: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(label names, (N, L) 0/1 matrix) of multi-label items, whose label field lists their labels
    separated by ``|`` (an empty field: no label). Names: ``classnames``, else every label seen, sorted."""
    sets = [{part.strip() for part in (it.label or "").split(LABEL_SEPARATOR)} - {""} for it in items]
    seen = set().union(*sets)
    names = [str(c) for c in classnames] if classnames is not None else sorted(seen)
    if seen - set(names):
        raise InputError(f"labels {sorted(seen - set(names))} are not among the class names given; name every label (labels are separated by {LABEL_SEPARATOR!r})")
    return names, np.array([[n in labels for n in names] for labels in sets], dtype=np.int64).reshape(len(sets), len(names))


def _group_values(items: Sequence[ImageItem], columns: list[str]) -> dict[str, np.ndarray]:
    """Each column's group per item, and with several columns their intersection ("a&b")."""
    values = {c: np.array([group_value(it, c) for it in items]) for c in columns}
    if len(columns) > 1:
        values["&".join(columns)] = np.array(["&".join(v) for v in zip(*(values[c] for c in columns))])
    return values


def _predictability(X: np.ndarray, g: np.ndarray, seed: int) -> float:
    """``group_predictability`` over the groups with at least 2 images (NaN when fewer than 2 such groups)."""
    values, counts = np.unique(g, return_counts=True)
    keep = np.isin(g, values[counts >= 2])
    if len(np.unique(g[keep])) < 2:
        return float("nan")
    return group_predictability(X[keep], g[keep], seed=seed)


def run_fairness(
    model,
    images: ImageSource | str | os.PathLike,
    group_columns: Sequence[str],
    classnames: Sequence[str] | None = None,
    templates: Any = None,
    opts: EmbedOptions | None = None,
    *,
    attribute: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    pretrained: str | None = None,
    multilabel: bool = False,
) -> FairnessResult:
    """``metrics``: ``max_gap``, ``macro_auroc_gap`` (the spread over groups of their macro one-vs-rest
    AUROC of the softmax probabilities, see :func:`~cliplab.evaluate.fairness.group_auroc`),
    ``equalized_odds_difference``, ``demographic_parity_difference``,
    ``group_predictability`` of the first column (or, with several, the worst over columns and their
    intersection); every column's groups and figures in ``columns``.

    ``multilabel``: each image's label is a set (see :func:`label_sets`), as chest X-ray findings are;
    then only the per-label AUROC of the zero-shot logits per group, ``macro_auroc_gap`` and
    ``group_predictability`` are measured."""
    columns = list(dict.fromkeys(group_columns))
    if not columns:
        raise InputError("fairness needs at least one --group-column")
    src, name = open_images(images, attribute, labelled=True)
    if multilabel:
        return _run_multilabel(model, src, name, columns, classnames, templates, opts or EmbedOptions(), seed, pretrained)
    run = zeroshot(model, src, opts or EmbedOptions(), classnames, templates)
    pred = run.logits.argmax(1)
    probs = softmax(run.logits)
    measured = []
    for column, g in _group_values(run.items, columns).items():
        stats = group_stats(run.y, pred, g, run.classes, n_boot=n_boot, seed=seed)
        n_groups = len(stats)
        measured.append(ColumnFairness(
            column, stats, max_gap({s.group: s.acc1.value for s in stats}),
            equalized_odds_difference(run.y, pred, g), demographic_parity_difference(run.y, pred, g),
            _predictability(run.X, g, seed), 1.0 / n_groups, group_auroc(run.y, probs, g, run.classes),
        ))  # fmt: skip
    metrics = _summary(measured)
    metrics["acc1"] = float(np.mean(pred == run.y))
    return FairnessResult(**header(model, name, "fairness", pretrained), metrics=metrics, classes=run.classes, columns=measured, n_images=len(run.y))


def _run_multilabel(model, src: ImageSource, name: str, columns: list[str], classnames, templates, opts: EmbedOptions,
                    seed: int, pretrained: str | None) -> FairnessResult:  # fmt: skip
    """The multi-label form of :func:`run_fairness`: per-label AUROC of the zero-shot logits per group."""
    from cliplab.zeroshot import ZeroShotClassifier

    X, items = embed_source(model, src, opts)
    classes, labels = label_sets(items, classnames)
    scores = ZeroShotClassifier(model, classes, templates if templates is not None else "default").fit().decision_function(X)
    measured = [
        ColumnFairness(column, [], None, None, None, _predictability(X, g, seed), 1.0 / len(np.unique(g)), group_auroc(labels, scores, g, classes))
        for column, g in _group_values(items, columns).items()
    ]  # fmt: skip
    return FairnessResult(**header(model, name, "fairness", pretrained), metrics=_summary(measured), classes=classes, columns=measured, n_images=len(items))


def _summary(measured: list[ColumnFairness]) -> dict[str, Any]:
    """The figures of the one column, or the worst of each gap over several and every predictability."""
    if len(measured) == 1:
        return measured[0].figures()
    gaps = [k for k in ("max_gap", "macro_auroc_gap", "equalized_odds_difference", "demographic_parity_difference") if k in measured[0].figures()]
    metrics: dict[str, Any] = {k: max(m.figures()[k] for m in measured) for k in gaps}
    metrics["group_predictability"] = {m.column: m.group_predictability for m in measured}
    return metrics


def report(result: FairnessResult) -> Report:
    rep = Report(f"Fairness: {result.model} on {result.dataset}", f"{result.n_images} images; 95% percentile bootstrap intervals")
    rep.add_table("Summary", {k: v for k, v in result.metrics.items() if not isinstance(v, dict)})
    for col in result.columns:
        rep.add_table(f"Group column {col.column}", col.figures())
        rep.add_table(f"AUROC by {col.column}", [{"group": g, **auroc} for g, auroc in col.auroc.items()])
        if not col.groups:
            continue
        bars = {f"{s.group} (n={s.n})": (s.acc1.value, s.acc1.low, s.acc1.high) for s in col.groups}
        rep.add_figure(f"Accuracy by {col.column}", task_plots.interval_bars_png(bars, f"acc1 by {col.column}", "acc1"))
        rep.add_table(f"Per group: {col.column}", [
            {"group": s.group, "n": s.n, "acc1": s.acc1.value, "acc1 low": s.acc1.low, "acc1 high": s.acc1.high,
             **{f"TPR {c}": s.tpr[c].value for c in result.classes}, **{f"FPR {c}": s.fpr[c].value for c in result.classes}}
            for s in col.groups
        ])  # fmt: skip
    return rep
