"""Zero-shot classification head over image embeddings (scikit-learn estimator)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from cliplab.zeroshot._base import SharedModelClone, check_features, softmax
from cliplab.zeroshot.templates import TemplateSpec, ensemble_text_weights


def check_labels(y: Any, classes: np.ndarray) -> None:
    """Raise if ``y`` holds labels that are not class names (accuracy would silently be 0)."""
    if y is None:
        return
    unknown = sorted(set(np.asarray(y).tolist()) - set(classes.tolist()), key=str)
    if unknown:
        raise ValueError(f"labels must be class names; {len(unknown)} are not, e.g. {unknown[:3]}")


class ZeroShotClassifier(SharedModelClone, ClassifierMixin, BaseEstimator):
    """CLIP zero-shot classifier: ``logit_scale * X @ text_weights_.T``.

    ``X`` holds L2-normalised image embeddings from ``model``; labels are the class names.
    ``fit`` only builds the text side (``X`` is ignored apart from a shape check), so the head
    drops into ``Pipeline`` / ``cross_val_score``; ``predict`` builds it lazily when unfitted.
    """

    def __init__(self, model, classnames: Sequence[str], templates: TemplateSpec = "default"):
        self.model = model
        self.classnames = classnames
        self.templates = templates

    def fit(self, X: Any = None, y: Any = None) -> "ZeroShotClassifier":
        if len(set(self.classnames)) != len(self.classnames):
            raise ValueError("class names must be unique")
        self.classes_ = np.array(list(self.classnames))
        self.text_weights_ = ensemble_text_weights(self.model, self.classes_.tolist(), self.templates)
        self.n_features_in_ = self.text_weights_.shape[1]
        if X is not None:
            check_features(X, self.n_features_in_)
        check_labels(y, self.classes_)
        return self

    def _fitted(self) -> "ZeroShotClassifier":
        return self if hasattr(self, "text_weights_") else self.fit()

    def decision_function(self, X: Any) -> np.ndarray:
        """(N, C) logits: ``model.logit_scale * X @ text_weights_.T``."""
        self._fitted()
        X = check_features(X, self.text_weights_.shape[1])
        return np.float32(self.model.logit_scale) * (X @ self.text_weights_.T)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the logits; rows sum to 1."""
        return softmax(self.decision_function(X), axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """Class names of the highest logit (ties go to the earlier class)."""
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]
