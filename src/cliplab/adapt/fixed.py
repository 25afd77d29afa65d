"""``TextWeightsHead``: zero-shot classification from given text weights, as a saveable head."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import _fit_context

from cliplab.adapt._base import ZERO_SHOT_CONSTRAINTS, Head, resolve_zero_shot
from cliplab.errors import InputError


class TextWeightsHead(Head):
    """``logit_scale * X @ text_weights.T``: the zero-shot baseline over precomputed class weights.

    ``fit(X, y)`` learns nothing: it fixes ``classes_`` (sorted labels, the rows of
    ``text_weights`` follow them) and checks the shapes.

    Parameters
    ----------
    text_weights : array-like of shape (C, D), ZeroShotClassifier or None, default=None
        Zero-shot class weights whose rows follow the sorted labels, or a fitted ``ZeroShotClassifier``
        (its rows are reordered by class name).
    logit_scale : float > 0 or None, default=None
        Scale of the zero-shot logits; None takes the classifier's model scale, else 100.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    n_features_in_ : int
        Feature width D.
    text_weights_ : ndarray of shape (C, D)
        Zero-shot weights in the order of ``classes_``.
    logit_scale_ : float
        The zero-shot logit scale used.
    """

    _parameter_constraints: dict = {**ZERO_SHOT_CONSTRAINTS}

    def __init__(self, text_weights: Any = None, logit_scale: float | None = None):
        self.text_weights = text_weights
        self.logit_scale = logit_scale

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "TextWeightsHead":
        """Fix ``classes_`` and check shapes; validation rows are accepted (like the other heads) and unused."""
        X, _ = self._fit_inputs(X, y)
        self.text_weights_, self.logit_scale_ = resolve_zero_shot(self.text_weights, self.logit_scale, self.classes_, X.shape[1])
        if self.text_weights_ is None:
            raise InputError("TextWeightsHead needs text_weights (C x D) or a fitted ZeroShotClassifier")
        return self

    def class_scores(self, X: Any) -> np.ndarray:
        X = self._checked(X)
        return np.float32(self.logit_scale_) * (X @ self.text_weights_.T)
