"""Trust in a head's outputs: temperature scaling and split-conformal prediction sets.

Both wrap an already fitted head and only calibrate: ``fit(X_cal, y_cal)`` never refits the head,
and an unfitted head is refused (fit it first).
Use calibration rows the head was not fitted on (and, to report coverage honestly, not the test rows).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted

from cliplab.adapt._base import label_index
from cliplab.adapt.io import SavableHead
from cliplab.errors import InputError
from cliplab.evaluate.calibration import fit_temperature
from cliplab.validation import FRACTION, ValidatedParams, check_embeddings
from cliplab.zeroshot._base import ClassScores

CONFORMAL_METHODS = ("lac", "aps")


class _Wrapper(SavableHead, ValidatedParams, ClassScores, ClassifierMixin, BaseEstimator):
    def _calibration_inputs(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        # a wrapper calibrates a prefit head, as scikit-learn's FrozenEstimator / cv="prefit": fitting
        # it here would put the calibration rows in its training data and void the guarantees
        try:
            check_is_fitted(self.head)
        except NotFittedError as exc:
            raise InputError(f"{type(self).__name__} wraps a fitted head but this {type(self.head).__name__} is not fitted; "
                             "call head.fit(X_train, y_train) first, on rows other than the calibration rows") from exc  # fmt: skip
        self.classes_ = np.asarray(self.head.classes_)
        self.n_features_in_ = int(self.head.n_features_in_)
        X = check_embeddings(X, self.n_features_in_)
        if len(X) == 0:
            raise InputError("calibration needs at least one labelled row")
        return X, label_index(y, self.classes_, len(X))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self.head.predict(X)


class TemperatureScaling(_Wrapper):
    """Divide a fitted head's logits by one temperature T fitted on validation rows (minimum NLL).

    Accuracy is unchanged (same argmax); probabilities become calibrated.

    Parameters
    ----------
    head : fitted cliplab head
        The head whose logits (``class_scores``) are rescaled; it is never refitted.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        The head's classes.
    n_features_in_ : int
        The head's feature width.
    temperature_ : float
        T > 0.
    """

    _parameter_constraints: dict = {"head": [HasMethods(["class_scores", "predict"])]}

    def __init__(self, head: Any):
        self.head = head

    @_fit_context(prefer_skip_nested_validation=False)  # wraps a user-given head
    def fit(self, X: Any, y: Any) -> "TemperatureScaling":
        X, y_index = self._calibration_inputs(X, y)
        self.temperature_ = fit_temperature(self.head.class_scores(X), y_index)
        return self

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) the head's logits divided by ``temperature_``."""
        check_is_fitted(self, "temperature_")
        return self.head.class_scores(X) / np.float32(self.temperature_)

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(self.class_scores(X), axis=1)


def conformal_scores(probs: np.ndarray, method: str) -> np.ndarray:
    """(N, C) nonconformity of every (row, class): LAC ``1 - p_c``; APS the probability mass of the
    classes ranked at or above c (non-randomised, so coverage >= 1 - alpha holds conservatively)."""
    if method == "lac":
        return 1.0 - probs
    order = np.argsort(-probs, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)
    scores = np.empty_like(probs)
    np.put_along_axis(scores, order, cumulative, axis=1)
    return scores


def conformal_quantile(cal_scores: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))-th smallest calibration score (inf when that exceeds n)."""
    n = len(cal_scores)
    k = math.ceil((n + 1) * (1.0 - alpha))
    return float("inf") if k > n else float(np.sort(cal_scores)[k - 1])


class ConformalClassifier(_Wrapper):
    """Split-conformal prediction sets around a fitted head (LAC or APS).

    ``fit(X_cal, y_cal)`` stores the nonconformity scores of the true labels; ``predict_set(X)``
    returns an (N, C) boolean array, columns in the order of ``head.classes_``, that contains the true
    class with probability >= 1 - alpha when calibration and test rows are exchangeable. ``alpha``
    may be changed after fitting (``set_params(alpha=...)``): the quantile is taken at prediction.

    Parameters
    ----------
    head : fitted cliplab head
        The head whose probabilities are turned into sets; it is never refitted.
    alpha : float in (0, 1), default=0.1
        Miscoverage: sets hold the true class with probability >= 1 - alpha.
    method : {"lac", "aps"}, default="lac"
        Nonconformity score.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        The head's classes.
    n_features_in_ : int
        The head's feature width.
    cal_scores_ : ndarray of shape (n_cal,)
        Sorted nonconformity scores of the calibration rows.
    """

    _parameter_constraints: dict = {
        "head": [HasMethods(["predict_proba", "predict"])],
        "alpha": [FRACTION],
        "method": [StrOptions(set(CONFORMAL_METHODS))],
    }

    def __init__(self, head: Any, alpha: float = 0.1, method: str = "lac"):
        self.head = head
        self.alpha = alpha
        self.method = method

    @_fit_context(prefer_skip_nested_validation=False)  # wraps a user-given head
    def fit(self, X: Any, y: Any) -> "ConformalClassifier":
        X, y_index = self._calibration_inputs(X, y)
        scores = conformal_scores(self.head.predict_proba(X).astype(np.float64), self.method)
        self.cal_scores_ = np.sort(scores[np.arange(len(X)), y_index])
        return self

    @property
    def qhat_(self) -> float:
        """The score threshold for the current ``alpha``."""
        check_is_fitted(self, "cal_scores_")
        if not 0.0 < self.alpha < 1.0:
            raise InputError(f"alpha must be in (0, 1), got {self.alpha}")
        return conformal_quantile(self.cal_scores_, self.alpha)

    def predict_set(self, X: Any) -> np.ndarray:
        """(N, C) boolean: class c is in the set of row i."""
        qhat = self.qhat_
        return conformal_scores(self.head.predict_proba(X).astype(np.float64), self.method) <= qhat

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.head.predict_proba(X)

    def class_scores(self, X: Any) -> np.ndarray:
        return self.head.class_scores(X)


def set_coverage(sets: np.ndarray, y_index: np.ndarray) -> float:
    """Fraction of rows whose set contains the true class."""
    return float(np.mean(sets[np.arange(len(sets)), y_index])) if len(sets) else float("nan")


def mean_set_size(sets: np.ndarray) -> float:
    return float(sets.sum(axis=1).mean()) if len(sets) else float("nan")
