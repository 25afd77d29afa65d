"""Subgroup performance: per-group accuracy and error rates with bootstrap intervals, the largest
gaps, equalized odds and demographic parity differences, and how predictable the group is from
the embedding (the two questions of "fairness of CLIP on chest X-rays": does accuracy differ by
group, and does the representation encode the group).

Labels and predictions are integer class indices; ``groups`` any hashable values (one per sample).
For two classes, ``equalized_odds_difference`` and ``demographic_parity_difference`` are fairlearn's
definitions with class 1 as positive; for more classes, the largest of the one-vs-rest values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cliplab.errors import InputError


def _check(y_true, y_pred, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p, g = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    if y.ndim != 1 or y.shape != p.shape or y.shape != g.shape or not len(y):
        raise InputError(f"y_true, y_pred and groups must be 1-D of one non-zero length, got {y.shape}, {p.shape}, {g.shape}")
    if y.dtype.kind not in "iu" or p.dtype.kind not in "iu":
        raise InputError("y_true and y_pred must be integer class indices")
    return y.astype(np.int64), p.astype(np.int64), g


def _rates(y: np.ndarray, p: np.ndarray, c: int) -> tuple[float, float]:
    """(TPR, FPR) of class ``c`` against the rest (NaN when a denominator is 0)."""
    pos, neg = y == c, y != c
    tpr = float(np.mean(p[pos] == c)) if pos.any() else float("nan")
    fpr = float(np.mean(p[neg] == c)) if neg.any() else float("nan")
    return tpr, fpr


def _classes(y: np.ndarray, p: np.ndarray) -> list[int]:
    return sorted(set(y.tolist()) | set(p.tolist()))


def _spread(values: list[float]) -> float:
    v = [x for x in values if not np.isnan(x)]
    return float(max(v) - min(v)) if len(v) > 1 else 0.0


def _one_vs_rest(y, p, g, classes: list[int], stat) -> float:
    """max over classes c (class 1 only for binary 0/1 labels) of the spread of stat over groups."""
    targets = [1] if set(classes) <= {0, 1} else classes
    return max(stat(y, p, g, c) for c in targets)


def _eo_one(y, p, g, c) -> float:
    rates = [_rates(y[g == k], p[g == k], c) for k in np.unique(g)]
    return max(_spread([r[0] for r in rates]), _spread([r[1] for r in rates]))


def _dp_one(y, p, g, c) -> float:
    return _spread([float(np.mean(p[g == k] == c)) for k in np.unique(g)])


def equalized_odds_difference(y_true, y_pred, groups) -> float:
    """The larger of the TPR and FPR differences between groups (max minus min over groups)."""
    y, p, g = _check(y_true, y_pred, groups)
    return _one_vs_rest(y, p, g, _classes(y, p), _eo_one)


def demographic_parity_difference(y_true, y_pred, groups) -> float:
    """The difference between groups' largest and smallest selection rates P(pred = positive)."""
    y, p, g = _check(y_true, y_pred, groups)
    return _one_vs_rest(y, p, g, _classes(y, p), _dp_one)


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass
class GroupStats:
    """One group's sample count, accuracy and per-class TPR/FPR, each with a 95% bootstrap interval."""

    group: str
    n: int
    acc1: Interval
    tpr: dict[str, Interval] = field(default_factory=dict)
    fpr: dict[str, Interval] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "n": self.n,
            "acc1": self.acc1.to_json(),
            "tpr": {c: v.to_json() for c, v in self.tpr.items()},
            "fpr": {c: v.to_json() for c, v in self.fpr.items()},
        }


def _interval(values: np.ndarray, point: float) -> Interval:
    v = values[~np.isnan(values)]
    if not len(v):
        return Interval(point, float("nan"), float("nan"))
    low, high = np.percentile(v, [2.5, 97.5])
    return Interval(point, float(low), float(high))


def group_stats(y_true, y_pred, groups, classnames: list[str], n_boot: int = 1000, seed: int = 0) -> list[GroupStats]:
    """Per group (sorted by name): n, acc1 and per-class TPR/FPR with percentile bootstrap 95%
    intervals (``n_boot`` resamples of the group's samples with replacement, seeded)."""
    y, p, g = _check(y_true, y_pred, groups)
    if y.max() >= len(classnames) or p.max() >= len(classnames):
        raise InputError(f"labels and predictions must be indices into the {len(classnames)} class names")
    rng = np.random.default_rng(seed)
    out = []
    for k in sorted(np.unique(g).tolist(), key=str):
        yk, pk = y[g == k], p[g == k]
        idx = rng.integers(0, len(yk), size=(n_boot, len(yk)))
        by, bp = yk[idx], pk[idx]
        stats = GroupStats(str(k), len(yk), _interval((by == bp).mean(1), float(np.mean(yk == pk))))
        for c, name in enumerate(classnames):
            tpr, fpr = _rates(yk, pk, c)
            with np.errstate(invalid="ignore"):
                pos, neg = by == c, by != c
                boot_tpr = ((bp == c) & pos).sum(1) / pos.sum(1)
                boot_fpr = ((bp == c) & neg).sum(1) / neg.sum(1)
            stats.tpr[name] = _interval(boot_tpr, tpr)
            stats.fpr[name] = _interval(boot_fpr, fpr)
        out.append(stats)
    return out


def max_gap(values: dict[str, float]) -> float:
    """Largest minus smallest of per-group values (e.g. accuracies)."""
    return _spread(list(values.values()))


def group_predictability(X, groups, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated balanced accuracy of a logistic regression predicting the group from the
    embedding (chance is 1 / number of groups); high means the representation encodes the group."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X, g = np.asarray(X, np.float64), np.asarray(groups).astype(str)
    _, counts = np.unique(g, return_counts=True)
    if len(counts) < 2:
        raise InputError("group predictability needs at least two groups")
    folds = min(folds, int(counts.min()))
    if folds < 2:
        raise InputError("every group needs at least 2 samples to predict it from the embedding")
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(LogisticRegression(max_iter=2000), X, g, cv=cv)
    return float(balanced_accuracy_score(g, pred))


def _binary_targets(targets, n_columns: int) -> np.ndarray:
    """(N, n_columns) 0/1 targets: one-vs-rest columns of 1-D class indices, or a 2-D 0/1 label matrix."""
    t = np.asarray(targets)
    if t.ndim == 1 and t.dtype.kind in "iu" and (not len(t) or (t.min() >= 0 and t.max() < n_columns)):
        return (t[:, None] == np.arange(n_columns)).astype(np.int64)
    if t.ndim == 2 and t.shape[1] == n_columns and np.isin(t, (0, 1)).all():
        return t.astype(np.int64)
    raise InputError(f"targets must be class indices in [0, {n_columns}) or an (N, {n_columns}) 0/1 label matrix, got shape {t.shape}")


def group_auroc(targets, scores, groups, names: list[str]) -> dict[str, dict[str, float]]:
    """Per group (sorted by name): the AUROC of each score column against its binary target, and
    their unweighted mean ``"macro"`` (sklearn's roc_auc_score per column, as its ``average="macro"``).

    ``targets``: (N,) class indices (multi-class: column c is one-vs-rest for class c) or an (N, L) 0/1
    matrix (multi-label: a sample can carry several labels). ``scores``: (N, L), higher = more likely.
    A column whose targets are all 0 or all 1 within a group has no AUROC there (NaN; left out of the
    macro mean, which is NaN when no column has one).
    """
    from sklearn.metrics import roc_auc_score

    s, g = np.asarray(scores, np.float64), np.asarray(groups)
    if s.ndim != 2 or s.shape[1] != len(names) or len(s) != len(g) or not len(s):
        raise InputError(f"scores must be (N, {len(names)}) with one group per row, got {s.shape} and {g.shape}")
    t = _binary_targets(targets, len(names))
    if len(t) != len(s):
        raise InputError(f"targets and scores must have one row per sample, got {len(t)} and {len(s)}")
    out = {}
    for k in sorted(np.unique(g).tolist(), key=str):
        tk, sk = t[g == k], s[g == k]
        per = {n: float(roc_auc_score(tk[:, c], sk[:, c])) if 0 < tk[:, c].sum() < len(tk) else float("nan") for c, n in enumerate(names)}
        defined = [v for v in per.values() if not np.isnan(v)]
        out[str(k)] = {**per, "macro": float(np.mean(defined)) if defined else float("nan")}
    return out
