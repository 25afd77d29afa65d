"""GDA: Gaussian discriminant analysis on CLIP features, ensembled with zero-shot (reference a, ICLR'24)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.linalg
from sklearn.base import _fit_context

from cliplab.adapt._base import ZERO_SHOT_CONSTRAINTS, Head, resolve_zero_shot, validation_split
from cliplab.validation import FRACTION, NON_NEGATIVE, SEED

ALPHA_GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)  # the official code's grid


def shared_precision(X: np.ndarray, y_index: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The official code's shared inverse covariance: D * pinv((N-1) S + tr(S) I).

    S is the unbiased covariance of the features centred on their own class mean, so (N-1) S is the
    within-class scatter Z^T Z. Computed in float64.
    """
    Z = X.astype(np.float64) - means[y_index].astype(np.float64)
    n, d = Z.shape
    scatter = Z.T @ Z
    trace_s = float(np.trace(scatter)) / max(n - 1, 1)
    matrix = scatter + trace_s * np.eye(d)
    if trace_s > 0:  # symmetric positive definite: pinv = inverse, from a Cholesky factor (several times faster)
        return d * scipy.linalg.cho_solve(scipy.linalg.cho_factor(matrix), np.eye(d))
    return d * np.linalg.pinv(matrix)  # every sample equals its class mean


class GDA(Head):
    """Training-free Gaussian discriminant analysis head (shared covariance, uniform priors).

    ``class_scores(X) = logit_scale * X @ text_weights.T + alpha * (X @ coef_.T + intercept_)``.
    Without ``text_weights`` it is the plain LDA classifier. ``alpha`` fixed skips the search;
    otherwise it is chosen from ``alpha_grid`` on ``X_val, y_val`` or on ``val_fraction`` of the
    training rows of each class (then the head is refitted on all of them). Each augmented view is
    one sample, as in the reference.

    Parameters
    ----------
    text_weights : array-like of shape (C, D), ZeroShotClassifier or None, default=None
        Zero-shot class weights whose rows follow the sorted labels, or a fitted ``ZeroShotClassifier``
        (its rows are reordered by class name).
    logit_scale : float > 0 or None, default=None
        Scale of the zero-shot logits; None takes the classifier's model scale, else 100.
    alpha : float >= 0 or None, default=None
        Weight of the LDA logits; None searches ``alpha_grid`` (1 without ``text_weights``).
    alpha_grid : array-like of float, default=ALPHA_GRID
        Candidates of the search (the official code's grid).
    val_fraction : float in (0, 1), default=0.25
        Share of each class carved from the training rows for the search when no ``X_val`` is given.
    random_state : int >= 0, default=0
        Seed of the validation carve.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    n_features_in_ : int
        Feature width D.
    means_ : ndarray of shape (C, D)
        Class means.
    precision_ : ndarray of shape (D, D)
        Shared inverse covariance.
    coef_ : ndarray of shape (C, D)
        LDA weights ``means_ @ precision_``.
    intercept_ : ndarray of shape (C,)
        LDA biases ``log(1/C) - 0.5 * mu_k^T precision_ mu_k``.
    text_weights_ : ndarray of shape (C, D) or None
        Zero-shot weights in the order of ``classes_`` (None without them).
    logit_scale_ : float
        The zero-shot logit scale used.
    alpha_ : float
        The ensemble weight used.
    val_accuracy_ : float or None
        Validation accuracy of ``alpha_`` (None when nothing was searched).
    """

    _parameter_constraints: dict = {
        **ZERO_SHOT_CONSTRAINTS,
        "alpha": [None, NON_NEGATIVE],
        "alpha_grid": ["array-like"],
        "val_fraction": [FRACTION],
        "random_state": [SEED],
    }

    def __init__(self, text_weights: Any = None, logit_scale: float | None = None, alpha: float | None = None,
                 alpha_grid: Sequence[float] = ALPHA_GRID, val_fraction: float = 0.25, random_state: int = 0):  # fmt: skip
        self.text_weights = text_weights
        self.logit_scale = logit_scale
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.val_fraction = val_fraction
        self.random_state = random_state

    def _fit_lda(self, X: np.ndarray, y_index: np.ndarray) -> None:
        n_classes = len(self.classes_)
        order = np.argsort(y_index, kind="stable")
        counts = np.bincount(y_index, minlength=n_classes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        means = np.add.reduceat(X[order].astype(np.float64), starts, axis=0) / counts[:, None]
        precision = shared_precision(X, y_index, means)
        coef = means @ precision
        self.means_ = means.astype(np.float32)
        self.precision_ = precision.astype(np.float32)
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = (np.log(1.0 / n_classes) - 0.5 * np.einsum("cd,cd->c", coef, means)).astype(np.float32)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "GDA":
        X, y_index = self._fit_inputs(X, y)
        text, self.logit_scale_ = resolve_zero_shot(self.text_weights, self.logit_scale, self.classes_, X.shape[1])
        self.text_weights_ = text
        self.val_accuracy_ = None
        if text is None or self.alpha is not None:
            self.alpha_ = float(self.alpha if self.alpha is not None else 1.0)
            self._fit_lda(X, y_index)
            return self
        rows, Xv, yv, carved = validation_split(X, y_index, X_val, y_val, self.classes_, self.val_fraction, self.random_state)
        self._fit_lda(X[rows], y_index[rows])
        self.alpha_ = 1.0
        if len(Xv):
            zero_shot = self.logit_scale_ * (Xv @ text.T)
            gda = Xv @ self.coef_.T + self.intercept_
            accs = [float(np.mean(np.argmax(zero_shot + a * gda, axis=1) == yv)) for a in self.alpha_grid]
            best = int(np.argmax(accs))  # first best, as the reference's strict '>'
            self.alpha_, self.val_accuracy_ = float(self.alpha_grid[best]), accs[best]
            if carved:
                self._fit_lda(X, y_index)
        return self

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) logits, columns in the order of ``classes_``."""
        X = self._checked(X)
        scores = np.float32(self.alpha_) * (X @ self.coef_.T + self.intercept_)
        if self.text_weights_ is not None:
            scores = np.float32(self.logit_scale_) * (X @ self.text_weights_.T) + scores
        return scores
