"""Calibration of class probabilities: ECE (equal-width and equal-mass bins), MCE, Brier, NLL, and
temperature scaling fitted by NLL (Guo et al., "On Calibration of Modern Neural Networks", 2017).

``probs`` are (N, C) rows of class probabilities, ``y`` (N,) true class indices. The confidence of a
row is its largest probability and its prediction the argmax (lowest index among ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special

from cliplab.errors import InputError

_EPS = 1e-12


@dataclass
class ReliabilityBins:
    """Per-bin counts, accuracy and mean confidence (empty bins have count 0 and NaN means)."""

    edges: np.ndarray  # (B + 1,) bin edges; equal-mass bins have data-dependent edges
    counts: np.ndarray  # (B,)
    accuracy: np.ndarray  # (B,)
    confidence: np.ndarray  # (B,)

    @property
    def gaps(self) -> np.ndarray:
        """|accuracy - confidence| per bin (NaN for empty bins)."""
        return np.abs(self.accuracy - self.confidence)


def _check_probs(probs, y) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(probs, np.float64), np.asarray(y)
    if p.ndim != 2 or y.ndim != 1 or len(p) != len(y):
        raise InputError(f"expected probs (N, C) and labels (N,), got {p.shape} and {y.shape}")
    if not len(y):
        raise InputError("calibration needs at least one sample")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= p.shape[1]:
        raise InputError(f"labels must be integer class indices in [0, {p.shape[1]})")
    if not np.isfinite(p).all() or p.min() < 0 or np.abs(p.sum(1) - 1).max() > 1e-3:
        raise InputError("probs must be finite rows of non-negative numbers that sum to 1 (apply softmax to logits)")
    return p, y.astype(np.int64)


def _bin_stats(conf: np.ndarray, correct: np.ndarray, bin_of: np.ndarray, n_bins: int, edges: np.ndarray) -> ReliabilityBins:
    counts = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(bin_of, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(bin_of, weights=conf, minlength=n_bins) / counts
    return ReliabilityBins(edges, counts, acc, mean_conf)


def reliability_bins(probs, y, n_bins: int = 15, strategy: str = "uniform") -> ReliabilityBins:
    """Bin samples by confidence. ``uniform``: ``n_bins`` equal-width bins over [0, 1], each
    [lower, upper) and the last [lower, 1]; ``quantile``: equal-mass bins (sorted confidences split into ``n_bins`` runs of
    sizes differing by at most one)."""
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}")
    p, y = _check_probs(probs, y)
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # side="right": conf == edge falls in the bin above it, [lower, upper), the last bin closed, as
        # np.histogram (netcal's ECE) bins; torchmetrics' calibration_error (torch.bucketize(right=True))
        # agrees on every inner edge but puts a confidence of exactly 1 in a bin of its own.
        bin_of = np.searchsorted(edges[1:-1], conf, side="right")
    elif strategy == "quantile":
        n_bins = min(n_bins, len(conf))
        order = np.argsort(conf, kind="stable")
        runs = np.array_split(order, n_bins)
        bin_of = np.empty(len(conf), np.int64)
        for b, run in enumerate(runs):
            bin_of[run] = b
        edges = np.concatenate([[0.0], [conf[run[-1]] for run in runs]])  # upper edge: a run's top confidence
    else:
        raise InputError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    return _bin_stats(conf, correct, bin_of, n_bins, edges)


def _expected_gap(bins: ReliabilityBins) -> float:
    filled = bins.counts > 0
    return float(np.sum(bins.counts[filled] / bins.counts.sum() * bins.gaps[filled]))


def ece(probs, y, n_bins: int = 15) -> float:
    """Expected calibration error: sum over equal-width bins [lower, upper) of |B|/n * |acc(B) - conf(B)|."""
    return _expected_gap(reliability_bins(probs, y, n_bins, "uniform"))


def ece_equal_mass(probs, y, n_bins: int = 15) -> float:
    """ECE over equal-mass (adaptive) bins: each bin holds n / n_bins samples (Nixon et al., 2019)."""
    return _expected_gap(reliability_bins(probs, y, n_bins, "quantile"))


def mce(probs, y, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest |acc(B) - conf(B)| over non-empty equal-width bins."""
    bins = reliability_bins(probs, y, n_bins, "uniform")
    return float(np.max(bins.gaps[bins.counts > 0]))


def brier(probs, y) -> float:
    """Multi-class Brier score: mean over samples of sum_c (p_c - [c == y])^2 (0 is perfect, 2 worst)."""
    p, y = _check_probs(probs, y)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def nll(probs, y) -> float:
    """Negative log-likelihood: mean of -log p_y (probabilities clipped at 1e-12)."""
    p, y = _check_probs(probs, y)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, None))))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64, numerically stable)."""
    return scipy.special.softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def _nll_at(logits: np.ndarray, y: np.ndarray, beta: float) -> float:
    z = beta * logits
    m = z.max(1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(logits, y, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on (logits, y).

    The NLL is convex in beta = 1/T (a log-sum-exp of functions linear in beta minus a linear term),
    so a bounded scalar search over log(beta) finds the global minimum (Guo et al. 2017, sec. 4.2).
    """
    z, y = np.asarray(logits, np.float64), np.asarray(y)
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y) or not len(y):
        raise InputError(f"expected logits (N, C) and labels (N,) with N > 0, got {z.shape} and {y.shape}")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= z.shape[1]:
        raise InputError(f"labels must be integer class indices in [0, {z.shape[1]})")
    from scipy.optimize import minimize_scalar

    lo, hi = np.log(1 / bounds[1]), np.log(1 / bounds[0])
    res = minimize_scalar(lambda lb: _nll_at(z, y, np.exp(lb)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return float(1.0 / np.exp(res.x))


def calibration_metrics(probs, y, n_bins: int = 15) -> dict[str, float]:
    """``{"ece", "ece_equal_mass", "mce", "brier", "nll"}`` of one set of probabilities."""
    return {
        "ece": ece(probs, y, n_bins),
        "ece_equal_mass": ece_equal_mass(probs, y, n_bins),
        "mce": mce(probs, y, n_bins),
        "brier": brier(probs, y),
        "nll": nll(probs, y),
    }
