"""Linear probe: logistic regression over CLIP features, C swept on validation (reference g)."""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any, Sequence

import numpy as np
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions

from cliplab.adapt._base import ZERO_SHOT_CONSTRAINTS, Head, resolve_zero_shot, validation_split
from cliplab.errors import InputError
from cliplab.validation import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, SEED

C_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)  # CoOp lpclip coarse sweep
ENSEMBLE_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
ZERO_SHOT_MODES = ("none", "init", "ensemble")


class LinearProbe(Head):
    """L2-regularised multinomial logistic regression (scikit-learn lbfgs) over the features.

    ``C`` fixed skips the sweep. Otherwise, as CoOp's lpclip: a coarse sweep over ``C_grid`` on the
    validation rows, then ``refine_steps`` steps of log-space bisection around the best C (start at
    [C/10, 10 C], keep the better end, halve the log-interval); the best C is refitted on all
    training rows when the validation rows were carved from them.

    ``tol`` is far below scikit-learn's 1e-4: its lbfgs stops on the gradient of the *mean* loss, which
    with many classes of unit-norm features starts below 1e-4 (measured: 1,000 classes x 16 shots x
    512-d stopped at iteration 0, chance accuracy).

    zero_shot: "none"; "init" starts lbfgs from ``logit_scale * text_weights`` (zero biases);
    "ensemble" adds ``w * logit_scale * X @ text_weights.T`` with w chosen on validation from
    ``ensemble_grid`` (``ensemble_weight`` fixes it).

    Parameters
    ----------
    text_weights : array-like of shape (C, D), ZeroShotClassifier or None, default=None
        Zero-shot class weights whose rows follow the sorted labels, or a fitted ``ZeroShotClassifier``
        (its rows are reordered by class name).
    logit_scale : float > 0 or None, default=None
        Scale of the zero-shot logits; None takes the classifier's model scale, else 100.
    zero_shot : {"none", "init", "ensemble"}, default="none"
        How the zero-shot weights take part (see above).
    C : float > 0 or None, default=None
        Inverse regularisation strength; None sweeps ``C_grid`` then refines.
    C_grid : array-like of float, default=C_GRID
        The coarse sweep (CoOp's lpclip).
    refine_steps : int >= 0, default=8
        Log-space bisection steps after the coarse sweep.
    ensemble_weight : float >= 0 or None, default=None
        Weight of the zero-shot logits with ``zero_shot="ensemble"``; None searches ``ensemble_grid``.
    ensemble_grid : array-like of float, default=ENSEMBLE_GRID
        Candidates of that search.
    max_iter : int >= 1, default=1000
        lbfgs iterations at most.
    tol : float >= 0, default=1e-8
        lbfgs tolerance.
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
    coef_ : ndarray of shape (C, D)
        Weights.
    intercept_ : ndarray of shape (C,)
        Biases.
    C_ : float
        The regularisation strength used.
    n_iter_ : int
        lbfgs iterations of the last fit.
    text_weights_ : ndarray of shape (C, D) or None
        Zero-shot weights (None with ``zero_shot="none"``).
    logit_scale_ : float
        The zero-shot logit scale.
    ensemble_weight_ : float
        Weight of the zero-shot logits (0 unless ``zero_shot="ensemble"``).
    val_accuracy_ : float or None
        Validation accuracy of the chosen setting (None when nothing was searched).
    """

    _parameter_constraints: dict = {
        **ZERO_SHOT_CONSTRAINTS,
        "zero_shot": [StrOptions(set(ZERO_SHOT_MODES))],
        "C": [None, POSITIVE],
        "C_grid": ["array-like"],
        "refine_steps": [Interval(Integral, 0, None, closed="left")],
        "ensemble_weight": [None, NON_NEGATIVE],
        "ensemble_grid": ["array-like"],
        "max_iter": [COUNT],
        "tol": [NON_NEGATIVE],
        "val_fraction": [FRACTION],
        "random_state": [SEED],
    }

    def __init__(self, text_weights: Any = None, logit_scale: float | None = None, zero_shot: str = "none",
                 C: float | None = None, C_grid: Sequence[float] = C_GRID, refine_steps: int = 8,
                 ensemble_weight: float | None = None, ensemble_grid: Sequence[float] = ENSEMBLE_GRID,
                 max_iter: int = 1000, tol: float = 1e-8, val_fraction: float = 0.25, random_state: int = 0):  # fmt: skip
        self.text_weights = text_weights
        self.logit_scale = logit_scale
        self.zero_shot = zero_shot
        self.C = C
        self.C_grid = C_grid
        self.refine_steps = refine_steps
        self.ensemble_weight = ensemble_weight
        self.ensemble_grid = ensemble_grid
        self.max_iter = max_iter
        self.tol = tol
        self.val_fraction = val_fraction
        self.random_state = random_state

    def _logreg(self, X: np.ndarray, y_index: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
        n_classes = len(self.classes_)
        if len(np.unique(y_index)) < n_classes:
            raise InputError("every class needs at least one training row for the linear probe")
        lr = LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol, random_state=self.random_state,
                                warm_start=self.zero_shot == "init")  # fmt: skip
        if self.zero_shot == "init":
            lr.coef_ = (self.logit_scale_ * self.text_weights_).astype(np.float64)
            lr.intercept_ = np.zeros(n_classes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # tiny C values stop at the prior
            lr.fit(X, y_index)
        self.n_iter_ = int(np.max(lr.n_iter_))
        coef, intercept = lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)
        if n_classes == 2:  # sklearn keeps one row for two classes: logits (-z/2, z/2) give the same softmax
            coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2], np.float32)
        return coef, intercept

    def _val_accuracy(self, coef, intercept, Xv, yv, weight: float = 0.0) -> float:
        scores = Xv @ coef.T + intercept
        if weight:
            scores = scores + weight * self.logit_scale_ * (Xv @ self.text_weights_.T)
        return float(np.mean(np.argmax(scores, axis=1) == yv))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "LinearProbe":
        X, y_index = self._fit_inputs(X, y)
        text, self.logit_scale_ = resolve_zero_shot(self.text_weights, self.logit_scale, self.classes_, X.shape[1])
        if self.zero_shot != "none" and text is None:
            raise InputError(f"zero_shot={self.zero_shot!r} needs text_weights or a fitted ZeroShotClassifier")
        self.text_weights_ = text if self.zero_shot != "none" else None
        self.val_accuracy_ = None
        self.ensemble_weight_ = 0.0
        search_c = self.C is None
        search_w = self.zero_shot == "ensemble" and self.ensemble_weight is None
        if self.zero_shot == "ensemble" and not search_w:
            self.ensemble_weight_ = float(self.ensemble_weight)
        self.C_ = float(self.C) if self.C is not None else 1.0
        if search_c or search_w:
            rows, Xv, yv, carved = validation_split(X, y_index, X_val, y_val, self.classes_, self.val_fraction, self.random_state)
            if len(Xv):
                fit_X, fit_y = X[rows], y_index[rows]
                fitted: dict[float, tuple] = {}

                def score(c: float) -> float:
                    if c not in fitted:
                        coef, intercept = self._logreg(fit_X, fit_y, c)
                        fitted[c] = (coef, intercept, self._val_accuracy(coef, intercept, Xv, yv, self.ensemble_weight_))
                    return fitted[c][2]

                if search_c:
                    self.C_ = self._sweep(score)
                coef, intercept = self._logreg(fit_X, fit_y, self.C_) if self.C_ not in fitted else fitted[self.C_][:2]
                if search_w:
                    accs = [self._val_accuracy(coef, intercept, Xv, yv, w) for w in self.ensemble_grid]
                    self.ensemble_weight_ = float(self.ensemble_grid[int(np.argmax(accs))])
                self.val_accuracy_ = self._val_accuracy(coef, intercept, Xv, yv, self.ensemble_weight_)
                if not carved:
                    self.coef_, self.intercept_ = coef, intercept
                    return self
        self.coef_, self.intercept_ = self._logreg(X, y_index, self.C_)
        return self

    def _sweep(self, score) -> float:
        """Coarse grid, then log-space bisection around the peak (CoOp lpclip, CLIP paper App. A.3)."""
        accs = [score(c) for c in self.C_grid]
        best = float(self.C_grid[int(np.argmax(accs))])
        lo, hi = np.log10(best) - 1.0, np.log10(best) + 1.0
        for _ in range(self.refine_steps):
            a, b = score(10.0**lo), score(10.0**hi)
            if a >= b:
                hi = (lo + hi) / 2
            else:
                lo = (lo + hi) / 2
        candidates = [best, 10.0**lo, 10.0**hi]
        return float(max(candidates, key=lambda c: (score(c), -candidates.index(c))))

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) logits ``X @ coef_.T + intercept_`` (+ the weighted zero-shot logits); columns follow ``classes_``."""
        X = self._checked(X)
        scores = X @ self.coef_.T + self.intercept_
        if self.ensemble_weight_:
            scores = scores + np.float32(self.ensemble_weight_ * self.logit_scale_) * (X @ self.text_weights_.T)
        return scores
