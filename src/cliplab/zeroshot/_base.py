"""Small helpers shared by the zero-shot heads: input checks, softmax, normalisation, cloning."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp(z: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.exp(z - m).sum(axis=axis))


def check_features(X: Any, dim: int) -> np.ndarray:
    """``X`` as a float32 (N, dim) array, or one clear ValueError."""
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(
            f"expected image features of shape (n_images, {dim}), got shape {arr.shape}; "
            "pass a 2-D array of embeddings from the same model as the text encoder"
        )
    return arr


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
