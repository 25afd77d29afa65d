"""Geometry of a joint embedding space: the modality gap, alignment and uniformity, and centring.

``image_emb`` and ``text_emb`` are (N, D) arrays; paired metrics take row i of each as a pair.
Rows are L2-normalised here, so unnormalised inputs give the same results as normalised ones.
"""

from __future__ import annotations

import numpy as np

from cliplab.errors import InputError


def _unit(x, name: str) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != 2 or not len(a) or not np.isfinite(a).all():
        raise InputError(f"{name} must be a non-empty finite (N, D) array, got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError(f"{name} has an all-zero row")
    return a / norms


def _two(image_emb, text_emb, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    img, txt = _unit(image_emb, "image_emb"), _unit(text_emb, "text_emb")
    if img.shape[1] != txt.shape[1] or (paired and len(img) != len(txt)):
        raise InputError(f"image and text embeddings must {'be paired and ' if paired else ''}share a width, got {img.shape} and {txt.shape}")
    return img, txt


def modality_gap(image_emb, text_emb) -> float:
    """Euclidean distance between the centroids of the normalised image and text embeddings
    (Liang et al., "Mind the Gap", 2022, sec. 4.1)."""
    img, txt = _two(image_emb, text_emb, paired=False)
    return float(np.linalg.norm(img.mean(0) - txt.mean(0)))


def _centre_flagged(X: np.ndarray) -> np.ndarray:
    """Rows of embeddings whose last column flags the modality (0 image, 1 text): each row minus the
    mean of its modality among these rows, re-normalised, flag dropped (:func:`centre_modalities` per fold)."""
    flag = X[:, -1].astype(int)
    means = np.stack([X[flag == m, :-1].mean(0) for m in (0, 1)])
    centred = X[:, :-1] - means[flag]
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)


def modality_separability(image_emb, text_emb, seed: int = 0, folds: int = 5, centred: bool = False) -> float:
    """How linearly separable the two modalities are: the cross-validated balanced accuracy of a
    logistic regression that tells an image embedding from a text embedding (0.5: inseparable).

    ``centred``: what is left once each modality is centred (:func:`centre_modalities`). The centring
    runs inside each fold, on that fold's own rows: centring on the whole set first leaves each
    held-out fold's mean opposite its training fold's (two samples of one distribution scored about
    0.2); centring held-out rows on the training means still scores about 0.4 there, because the
    re-normalisation pulls each training modality towards its own mean. Centred on their own rows,
    training and held-out folds are alike and such samples score 0.5."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    img, txt = _two(image_emb, text_emb, paired=False)
    y = np.r_[np.zeros(len(img), int), np.ones(len(txt), int)]
    X = np.concatenate([img, txt])
    folds = min(folds, len(img), len(txt))
    if folds < 2:
        raise InputError("modality separability needs at least 2 images and 2 texts")
    probe = LogisticRegression(max_iter=1000)
    if centred:  # the modality rides as a last column for the centring step, which drops it
        X, probe = np.column_stack([X, y]), make_pipeline(FunctionTransformer(_centre_flagged), probe)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(probe, X, y, cv=cv)
    return float(balanced_accuracy_score(y, pred))


def alignment(image_emb, text_emb, alpha: float = 2.0) -> float:
    """E ||f(x) - g(y)||^alpha over positive pairs (Wang & Isola, 2020, eq. 4); lower is better aligned."""
    img, txt = _two(image_emb, text_emb, paired=True)
    return float(np.mean(np.linalg.norm(img - txt, axis=1) ** alpha))


def uniformity(x, t: float = 2.0) -> float:
    """log E_{i<j} exp(-t ||x_i - x_j||^2) (Wang & Isola, 2020, eq. 5); lower is more uniform."""
    u = _unit(x, "x")
    if len(u) < 2:
        raise InputError("uniformity needs at least 2 embeddings")
    sq = np.maximum(2.0 - 2.0 * u @ u.T, 0.0)  # ||a - b||^2 for unit vectors
    iu = np.triu_indices(len(u), k=1)
    vals = -t * sq[iu]
    m = vals.max()
    return float(m + np.log(np.mean(np.exp(vals - m))))


def centre_modalities(image_emb, text_emb) -> tuple[np.ndarray, np.ndarray]:
    """Each modality minus its own mean, re-normalised: removes the gap vector (Liang et al. 2022)."""
    img, txt = _two(image_emb, text_emb, paired=False)
    return _unit(img - img.mean(0), "centred image_emb"), _unit(txt - txt.mean(0), "centred text_emb")


def geometry(image_emb, text_emb, seed: int = 0, centred: bool = False) -> dict[str, float]:
    """Gap, separability, alignment, and both uniformities of paired embeddings; ``centred``: of the
    embeddings with each modality centred (:func:`centre_modalities`; separability centres inside each fold)."""
    a, b = centre_modalities(image_emb, text_emb) if centred else (image_emb, text_emb)
    return {
        "modality_gap": modality_gap(a, b),
        "modality_separability": modality_separability(image_emb, text_emb, seed, centred=centred),
        "alignment": alignment(a, b),
        "uniformity_image": uniformity(a),
        "uniformity_text": uniformity(b),
        "mean_pair_cosine": float(np.mean(np.sum(_unit(a, "image_emb") * _unit(b, "text_emb"), axis=1))),
    }
