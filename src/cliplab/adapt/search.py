"""Validation search over the cache-model grids of Tip-Adapter and Tip-X, fast enough for 1,000 classes.

The logits of these heads are ``Z + alpha * C_beta`` (``Z`` the zero-shot part, ``C_beta`` the
class-summed cache affinities). For one beta, a validation row is classified correctly exactly for
the alphas inside an open interval (lo, hi): the true class y wins over class c iff
``(Z_y - Z_c) + alpha * (C_y - C_c) > 0``, a half-line in alpha. So every alpha of the grid is
scored from two numbers per row instead of one argmax over C classes per alpha. And only the
classes that can beat the true class somewhere on the grid enter those numbers (a bound on the
cache logits rules the others out), which at 1,000 classes is a few percent of them.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

ROW_CHUNK = 256  # validation rows per block: keeps a block of affinities in cache


def reference_grid(scale: float, steps: int, start: float) -> np.ndarray:
    """Tip-Adapter's ``search_hp`` grid: ``start + i * (scale - start) / steps`` for i < steps."""
    return np.array([start + i * (scale - start) / steps for i in range(steps)], dtype=np.float64)


class ClassPaddedKeys:
    """Cache keys grouped by class and padded to the same count, so class sums are a reshape.

    ``affinity(X)`` is (N, C, m) cosine affinities with ``-inf`` at the padding, so that
    ``exp(-beta * (1 - A))`` is 0 there.
    """

    def __init__(self, keys: np.ndarray, y_index: np.ndarray, n_classes: int):
        counts = np.bincount(y_index, minlength=n_classes)
        m = max(int(counts.max()), 1)
        order = np.argsort(y_index, kind="stable")
        slot = np.arange(len(y_index)) - np.repeat(np.cumsum(counts) - counts, counts)
        padded = np.zeros((n_classes, m, keys.shape[1]), np.float32)
        padded[y_index[order], slot] = keys[order]
        self.mask = np.zeros((n_classes, m), bool)
        self.mask[y_index[order], slot] = True
        self.keys = padded.reshape(n_classes * m, -1)
        self.shape = (n_classes, m)

    def affinity(self, X: np.ndarray) -> np.ndarray:
        A = (np.ascontiguousarray(X, dtype=np.float32) @ self.keys.T).reshape(len(X), *self.shape)
        A[:, ~self.mask] = -np.inf
        return A


def class_cache_logits(A: np.ndarray, beta: float) -> np.ndarray:
    """``sum_{k in class c} exp(-beta * (1 - A_k))`` for padded affinities A (N, C, m)."""
    return np.exp((A - np.float32(1.0)) * np.float32(beta)).sum(axis=-1)


def correct_intervals(Z: np.ndarray, C: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the open interval of alpha > 0 where argmax(Z + alpha*C) is the true class y.

    Z and C are (..., N, classes) (leading axes broadcast, e.g. one per gamma of Tip-X), y is (N,).
    Returns (lo, hi) of shape (..., N); an empty interval has lo >= hi.
    """
    Z, C = np.broadcast_arrays(Z, C)
    at_y = y[:, None]
    d = np.take_along_axis(Z, np.broadcast_to(at_y, Z.shape[:-1] + (1,)), axis=-1) - Z  # margin of y over c at alpha 0
    e = np.take_along_axis(C, np.broadcast_to(at_y, C.shape[:-1] + (1,)), axis=-1) - C  # its slope in alpha
    own = np.zeros(Z.shape[-2:], bool)
    own[np.arange(len(y)), y] = True  # y against itself: no constraint
    d = np.where(own, 1.0, d)
    e = np.where(own, 0.0, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = -d / e
    lo = np.maximum(np.where(e > 0, r, -np.inf).max(axis=-1), 0.0)
    hi = np.where(e < 0, r, np.inf).min(axis=-1)
    hi = np.where(((e == 0) & (d <= 0)).any(axis=-1), 0.0, hi)
    return lo, hi


def cache_logits_over_betas(A: np.ndarray, betas: Sequence[float]) -> Iterator[np.ndarray]:
    """``class_cache_logits(A, beta)`` for each beta of the grid, in order.

    On an evenly spaced grid each step multiplies by exp(h (A - 1)) instead of taking a new
    exponential (exp(b_{i+1} x) = exp(b_i x) exp(h x)); the relative drift after 200 steps is about
    1e-5, far below the gaps between grid accuracies.
    """
    betas = np.asarray(betas, dtype=np.float64)
    steps = np.diff(betas)
    if len(betas) < 3 or not np.allclose(steps, steps[0], rtol=1e-9, atol=0):
        for beta in betas:
            yield class_cache_logits(A, float(beta))
        return
    shifted = A - np.float32(1.0)
    E = np.exp(shifted * np.float32(betas[0]))
    step = np.exp(shifted * np.float32(steps[0]))
    ones = np.ones(A.shape[-1], np.float32)  # a matrix-vector product sums the short last axis far faster than .sum
    for b in range(len(betas)):
        yield E @ ones
        if b + 1 < len(betas):
            E *= step


def competing_classes(zero_shot: np.ndarray, A: np.ndarray, y: np.ndarray, alphas: Sequence[float], betas: Sequence[float],
                      true_cache: np.ndarray) -> np.ndarray:  # fmt: skip
    """(N, C) mask of the classes that may beat the true class somewhere on the grid.

    A class c outside the mask loses to y for every alpha in [0, max(alphas)] and every beta, so it
    cannot move any interval of :func:`correct_intervals` across a grid alpha. The bound: every
    other class's cache logit is at most ``m * exp(beta * (M - 1))`` (m keys per class, M the
    row's largest affinity to another class's key), hence
    ``(Z_y - Z_c) + alpha (C_y - C_c) >= (Z_y - Z_c) + max(alphas) * min(0, C_y - m exp(beta (M - 1)))``,
    which is positive for every beta once ``Z_c`` is below ``Z_y`` by the largest such slack.
    ``true_cache`` is the (len(betas), N) cache logit of each row's true class.
    """
    n, _, m = A.shape
    rows = np.arange(n)
    best_other = A.max(axis=-1)
    best_other[rows, y] = -np.inf
    M = best_other.max(axis=1)
    bound = m * np.exp(np.asarray(betas, np.float64)[:, None] * (M[None, :].astype(np.float64) - 1.0))
    slack = max(float(np.max(alphas)), 0.0) * np.minimum(0.0, (true_cache - bound).min(axis=0))
    Z_y = zero_shot[rows, y].astype(np.float64)
    margin = 1e-4 * (1.0 + np.abs(Z_y))  # float32 rounding of the logits: keep near-ties exact
    return zero_shot >= (Z_y + slack - margin)[:, None]


def grid_accuracy(zero_shot: np.ndarray, A: np.ndarray, y: np.ndarray, alphas: Sequence[float], betas: Sequence[float]) -> np.ndarray:
    """(len(betas), len(alphas)) validation accuracies of ``zero_shot + alpha * cache(beta)``.

    ``zero_shot`` is (N, C); ``A`` the (N, C, m) class-padded affinities of the validation rows
    (``ClassPaddedKeys.affinity``). Only the (row, class) pairs of :func:`competing_classes` are
    scored; the others provably never decide a grid point, so the result is that of scoring all.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    hits = np.zeros((len(betas), len(alphas)))
    y = np.asarray(y, dtype=np.int64)
    for start in range(0, len(y), ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        Z, Ar, yr = np.ascontiguousarray(zero_shot[rows], dtype=np.float32), A[rows], y[rows]
        local = np.arange(len(yr))
        true_cache = np.stack(list(cache_logits_over_betas(Ar[local, yr], betas)))
        pair_row, pair_class = np.nonzero(competing_classes(Z, Ar, yr, alphas, betas, true_cache))
        starts = np.flatnonzero(np.r_[True, pair_row[1:] != pair_row[:-1]])  # every row keeps its own class
        own = pair_class == yr[pair_row]
        d = np.where(own, 1.0, Z[local, yr][pair_row] - Z[pair_row, pair_class])  # margin of y over c at alpha 0
        for b, cache in enumerate(cache_logits_over_betas(Ar[pair_row, pair_class], betas)):
            e = np.where(own, 0.0, cache[own][pair_row] - cache)  # its slope in alpha
            with np.errstate(divide="ignore", invalid="ignore"):
                r = -d / e
            lo = np.maximum(np.maximum.reduceat(np.where(e > 0, r, -np.inf), starts), 0.0)
            hi = np.minimum.reduceat(np.where(e < 0, r, np.inf), starts)
            hi = np.where(np.logical_or.reduceat((e == 0) & (d <= 0), starts), 0.0, hi)
            hits[b] += ((lo[:, None] < alphas) & (alphas < hi[:, None])).sum(axis=0)
    return hits / max(len(y), 1)


def best_on_grid(acc: np.ndarray) -> tuple[int, ...]:
    """Index of the first best accuracy in C order (the reference loops the grids in this order;
    its strict '>' keeps the first)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(acc)), acc.shape))
