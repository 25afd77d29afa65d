"""What every adaptation head shares: labels, zero-shot weights, validation splits, the predict trio.

A head subclasses :class:`Head` and implements ``fit`` and ``class_scores`` (N x C logits);
``decision_function`` (scikit-learn's shape: N for two classes), ``predict``, ``predict_proba`` and
``score`` (accuracy, from ``ClassifierMixin``) follow. Labels may be ints or
strings; ``classes_`` is their sorted unique set and the columns of every score array follow it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from cliplab.adapt.io import SavableHead
from cliplab.data.few_shot import stratified_split
from cliplab.errors import InputError
from cliplab.validation import POSITIVE, ValidatedParams, check_embeddings, check_labels
from cliplab.zeroshot._base import ClassScores

REFERENCE_LOGIT_SCALE = 100.0  # the constant GDA, Tip-Adapter, SuS-X and CLIP-SVD hard-code
# the constraints of the zero-shot part every head over embeddings may take
ZERO_SHOT_CONSTRAINTS = {
    "text_weights": [None, "array-like", HasMethods(["fit", "predict"])],  # (C, D) or a ZeroShotClassifier
    "logit_scale": [None, POSITIVE],
}


def encode_labels(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes_, y_index)``: sorted unique labels and each row's index into them."""
    y = check_labels(y, n)
    classes, index = np.unique(y, return_inverse=True)
    return classes, index.astype(np.int64)


def label_index(y: Any, classes: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``y`` into ``classes``; every label must be one of them."""
    y = check_labels(y, n)
    pos = np.searchsorted(classes, y)
    pos = np.clip(pos, 0, len(classes) - 1)
    bad = classes[pos] != y
    if bad.any():
        raise InputError(f"labels {sorted(set(np.asarray(y)[bad].tolist()), key=str)[:3]} were not seen in fit")
    return pos.astype(np.int64)


def resolve_zero_shot(text_weights: Any, logit_scale: float | None, classes: np.ndarray, dim: int) -> tuple[np.ndarray | None, float]:
    """Zero-shot weights as a (C, D) float32 array whose rows follow ``classes``, and the logit scale.

    ``text_weights``: None, a (C, D) array (rows already follow ``classes``), or a fitted
    ``ZeroShotClassifier`` (its rows are reordered by class name). ``logit_scale``: as given; else
    the classifier's model scale; else 100 (the constant of the reference implementations).
    """
    if text_weights is None:
        return None, float(logit_scale if logit_scale is not None else REFERENCE_LOGIT_SCALE)
    if hasattr(text_weights, "text_weights_") or hasattr(text_weights, "classnames"):
        check_is_fitted(text_weights, "text_weights_")
        names = [str(c) for c in text_weights.classes_]
        where = {name: i for i, name in enumerate(names)}
        missing = [str(c) for c in classes if str(c) not in where]
        if missing:
            raise InputError(f"the zero-shot classifier has no class {missing[0]!r}; its classes are {names[:5]}...")
        weights = np.asarray(text_weights.text_weights_, dtype=np.float32)[[where[str(c)] for c in classes]]
        if logit_scale is None:
            logit_scale = float(text_weights.model.logit_scale)
    else:
        weights = check_embeddings(text_weights, name="text_weights", warn_norm=False)
    if weights.shape != (len(classes), dim):
        raise InputError(
            f"text_weights has shape {weights.shape} but the data has {len(classes)} classes of {dim} features; "
            "pass one row per class, in the order of the sorted class labels"
        )
    return weights, float(logit_scale if logit_scale is not None else REFERENCE_LOGIT_SCALE)


def check_features(X: Any, dim: int | None = None, *, name: str = "X") -> np.ndarray:
    """``cliplab.validation.check_embeddings`` plus what a head cannot fit on: sparse input, no rows, no columns."""
    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise InputError(f"{name} is a sparse matrix; sparse input is not supported, pass a dense array of embeddings")
    X = check_embeddings(X, dim, name=name)
    if dim is None and X.shape[1] == 0:
        raise InputError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required; pass embeddings")
    if dim is None and X.shape[0] == 0:
        raise InputError(f"{name} has 0 sample(s) (shape={X.shape}) while a minimum of 1 is required; pass embeddings")
    return X


class Head(SavableHead, ValidatedParams, ClassScores, ClassifierMixin, BaseEstimator):
    """Base of the classification heads: input checks and the predict trio over ``class_scores``.

    Subclasses set ``classes_`` and ``n_features_in_`` in ``fit`` and implement ``class_scores``.
    """

    def _fit_inputs(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Checked ``X`` (float32, N x D) and label indices; sets ``classes_`` and ``n_features_in_``."""
        X = check_features(X)
        self.classes_, y_index = encode_labels(y, len(X))
        self.n_features_in_ = X.shape[1]
        return X, y_index

    def _checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return check_features(X, self.n_features_in_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of ``class_scores``; columns follow ``classes_``."""
        return softmax(self.class_scores(X), axis=1)


def validation_split(
    X: np.ndarray, y_index: np.ndarray, X_val: Any, y_val: Any, classes: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """``(fit_rows, X_val, y_val_index, carved)`` for a hyperparameter search.

    An explicit ``X_val, y_val`` is used as given (``fit_rows`` = every row); otherwise
    ``val_fraction`` of each class is carved from the training rows (``carved`` True: refit on all
    of them once the search is done). Never the test data. When no row can be held out (one shot
    per class) the validation arrays are empty and a warning says the initial values are kept.
    """
    if X_val is not None:
        X_val = check_embeddings(X_val, X.shape[1], name="X_val")
        return np.arange(len(X)), X_val, label_index(y_val, classes, len(X_val)), False
    fit_rows, val_rows = stratified_split(y_index, val_fraction, seed, "val_fraction", keep_one=True)
    if len(val_rows) == 0:
        warnings.warn(
            "no class has two examples, so no validation rows can be held out; the hyperparameters keep their "
            "initial values (pass X_val, y_val or fix them)",
            UserWarning,
            stacklevel=3,
        )
    return fit_rows, X[val_rows], y_index[val_rows], True
