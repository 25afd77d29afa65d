"""Small helpers shared by the zero-shot heads (and the adaptation heads): input checks, class scores,
normalisation, cloning."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from cliplab.errors import InputError
from cliplab.validation import ValidatedParams, check_embeddings, check_labels


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


class ClassScores:
    """Mixin: ``decision_function`` and ``predict`` from ``class_scores(X)``, (N, C) with one column per class.

    ``decision_function`` follows scikit-learn's shape: the (N, C) scores for three or more classes;
    for two, (N,) the score of ``classes_[1]`` minus that of ``classes_[0]``, positive when the
    positive class wins, as the binary scorers (``roc_auc``, ``average_precision``) expect.
    """

    def class_scores(self, X: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X: Any) -> np.ndarray:
        scores = self.class_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X: Any) -> np.ndarray:
        """The class of the highest score (ties go to the earlier class)."""
        scores = self.class_scores(X)  # checks fitted first
        return self.classes_[np.argmax(scores, axis=1)]


class TextHead(ValidatedParams):
    """Mixin for heads whose ``fit`` only encodes texts: the shared scikit-learn input contract.

    ``fit(X, y)`` checks ``X``/``y`` when given (lengths, finite floats, labels among the classes);
    prediction methods call ``_checked(X)``, which raises ``NotFittedError`` before ``fit`` and
    validates ``X`` against ``n_features_in_``.
    """

    def _check_fit_inputs(self, X: Any, y: Any) -> None:
        if X is not None:
            X = check_embeddings(X, self.n_features_in_)
            if y is not None:
                check_labels(y, len(X))
        check_known_labels(y, self.classes_)

    def _checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return check_embeddings(X, self.n_features_in_)


def check_known_labels(y: Any, classes: np.ndarray) -> None:
    """Raise if ``y`` holds labels that are not class names (accuracy would silently be 0)."""
    if y is None:
        return
    unknown = sorted(set(np.asarray(y).ravel().tolist()) - set(classes.tolist()), key=str)
    if unknown:
        raise InputError(f"labels must be class names; {len(unknown)} are not, e.g. {unknown[:3]}")


class SharedModelClone:
    """Mixin: ``sklearn.base.clone`` shares the (frozen) ``model`` instead of deep-copying it.

    The default clone deep-copies every non-estimator constructor argument, which would copy a
    whole network for each cross-validation fold. The encoder is never mutated by these heads,
    so sharing it is safe; every other argument is cloned as sklearn would.
    """

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        model = params.pop("model")
        return type(self)(model=model, **{k: clone(v, safe=False) for k, v in params.items()})
