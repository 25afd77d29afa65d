"""Query vectors: text, image, and composed image + text.

Composed retrieval moves the query image's embedding along the text edit, as DeltaSpace does
(Lyu et al., 2023, "DeltaSpace: A Semantic-aligned Feature Space for Flexible Text-guided Image
Editing": in CLIP space the image difference between two images tracks the text difference
between their captions, Δi ≈ Δt). So for an image ``i`` described by ``source`` and the wish
``target``:

    q = normalise(i + alpha * (t(target) - t(source)))

``DeltaMapper`` learns that move instead, from example triplets, as a ridge regression from
``[i, Δt]`` to the image difference ``i' - i`` (an optional replacement for the fixed ``alpha``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from cliplab.errors import InputError
from cliplab.validation import check_embeddings

DEFAULT_SOURCE_TEXT = "a photo"
DEFAULT_ALPHA = 1.0


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def compose(image_vec: np.ndarray, target_vec: np.ndarray, source_vec: np.ndarray, alpha: float = DEFAULT_ALPHA,
            mapper: DeltaMapper | None = None) -> np.ndarray:
    """The composed query: the image embedding moved along (target - source) text, L2-normalised."""
    image_vec, target_vec, source_vec = (normalise(v) for v in (image_vec, target_vec, source_vec))
    delta = target_vec - source_vec
    if mapper is not None:
        return mapper.predict(np.hstack([image_vec, delta]))
    return normalise(image_vec + alpha * delta)


def query_vector(model: Any, *, text: str | None = None, image: Any = None, embedding: Any = None,
                 source_text: str | None = None, alpha: float = DEFAULT_ALPHA, mapper: DeltaMapper | None = None) -> np.ndarray:
    """One (1, d) query vector from exactly one of: text, image, image + text (composed), embedding."""
    if embedding is not None:
        if text is not None or image is not None:
            raise InputError("pass an embedding alone, not with a text or an image")
        vec = check_embeddings(normalise(embedding), name="embedding", warn_norm=False)
        dim = getattr(model, "embed_dim", vec.shape[1])
        if vec.shape[1] != dim:
            raise InputError(f"the embedding has {vec.shape[1]} dims but the model {getattr(model, 'name', '')} gives {dim}; "
                             "pass an embedding from the model the index was built with")
        return vec
    if image is not None and text is not None:
        img = model.encode_images([image])
        t = model.encode_texts([text, source_text or DEFAULT_SOURCE_TEXT])
        return compose(img, t[:1], t[1:], alpha, mapper)
    if image is not None:
        return model.encode_images([image])
    if text is not None:
        if not text.strip():
            raise InputError("the query text is empty; type what to look for")
        return model.encode_texts([text])
    raise InputError("nothing to search for; pass a text, an image or an embedding")


class DeltaMapper(RegressorMixin, BaseEstimator):
    """Learned composed-query move: ``[i, Δt]`` -> ``normalise(i + W [i, Δt] + b)``.

    Fit on triplets (source image embedding ``i``, text difference ``Δt``, target image ``i'``)
    with ``fit(np.hstack([I, ΔT]), I_target)``; a ridge regression (penalty ``alpha``) predicts the
    image difference ``i' - i``.

    Fitted attributes:
        regressor_: the fitted ``sklearn.linear_model.Ridge``.
        n_features_in_: ``2 d``.
    """

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, X: np.ndarray, y: np.ndarray) -> DeltaMapper:
        X = check_embeddings(X, name="X", warn_norm=False)
        if X.shape[1] % 2:
            raise InputError(f"X has {X.shape[1]} columns; pass [image, text difference] side by side (2 d columns)")
        Y = check_embeddings(y, X.shape[1] // 2, name="y")
        if len(Y) != len(X):
            raise InputError(f"X has {len(X)} rows but y has {len(Y)}")
        d = X.shape[1] // 2
        self.regressor_ = Ridge(alpha=self.alpha).fit(X, Y - X[:, :d])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        X = check_embeddings(X, self.n_features_in_, name="X", warn_norm=False)
        d = X.shape[1] // 2
        return normalise(X[:, :d] + self.regressor_.predict(X))

    def score(self, X: np.ndarray, y: np.ndarray, sample_weight=None) -> float:
        """Mean cosine between the predicted and the true target embeddings."""
        return float(np.mean(np.sum(self.predict(X) * normalise(y), axis=1)))
