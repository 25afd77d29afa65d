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

    Fitted attributes: classes_, n_features_in_, text_weights_ (C, D), logit_scale_.
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
