"""Zero-shot classification head over image embeddings (scikit-learn estimator)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context

from cliplab.validation import check_classnames
from cliplab.zeroshot._base import ClassScores, SharedModelClone, TextHead
from cliplab.zeroshot.templates import TemplateSpec, ensemble_text_weights


class ZeroShotClassifier(SharedModelClone, TextHead, ClassScores, ClassifierMixin, BaseEstimator):
    """CLIP zero-shot classifier: ``logit_scale * X @ text_weights_.T``.

    ``X`` holds L2-normalised image embeddings from ``model``; labels are the class names.
    ``fit`` only builds the text side (``X`` and ``y`` are checked, not learned from), so the head
    drops into ``Pipeline`` / ``cross_val_score``. Predicting before ``fit`` raises ``NotFittedError``.

    Parameters
    ----------
    model : cliplab Model
        The CLIP model whose text tower encodes the prompts (and whose image embeddings ``X`` are).
    classnames : sequence of str
        The distinct class names; they are the labels.
    templates : str, path, list of str or mapping, default="default"
        A built-in template set, templates with ``{c}``, a .txt/.json file, or class -> prompts.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        The class names, in the order given.
    text_weights_ : ndarray of shape (C, D)
        float32, one L2-normalised prompt-ensemble embedding per class.
    n_features_in_ : int
        D, the embedding width ``X`` must have.
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "classnames": "no_validation",  # check_classnames says what to pass instead
        "templates": [str, os.PathLike, Mapping, "array-like"],
    }

    def __init__(self, model, classnames: Sequence[str], templates: TemplateSpec = "default"):
        self.model = model
        self.classnames = classnames
        self.templates = templates

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any = None, y: Any = None) -> "ZeroShotClassifier":
        self.classes_ = np.array(check_classnames(self.classnames))
        self.text_weights_ = ensemble_text_weights(self.model, self.classes_.tolist(), self.templates)
        self.n_features_in_ = self.text_weights_.shape[1]
        self._check_fit_inputs(X, y)
        return self

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) logits: ``model.logit_scale * X @ text_weights_.T``."""
        X = self._checked(X)
        return np.float32(self.model.logit_scale) * (X @ self.text_weights_.T)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the logits; rows sum to 1."""
        return softmax(self.class_scores(X), axis=1)
