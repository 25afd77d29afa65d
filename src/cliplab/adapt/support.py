"""SuS-X / CapS-Adapter: a support-set cache (images and/or captions) with the TIP-X KL term (reference e)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import _fit_context

from cliplab.adapt._base import ZERO_SHOT_CONSTRAINTS, Head, resolve_zero_shot, validation_split
from cliplab.adapt.search import best_on_grid, correct_intervals, reference_grid
from cliplab.adapt.tip import one_hot
from cliplab.errors import InputError
from cliplab.validation import FRACTION, NON_NEGATIVE, POSITIVE, PROBABILITY, SEED, check_embeddings


def class_distributions(F: np.ndarray, text_weights: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(F W^T / T) over the **classes** (SuS-X ``tipx.py``). CapS-Adapter's code overwrites this
    product with a softmax over feature dimensions, a bug we do not reproduce."""
    return softmax(F.astype(np.float64) @ text_weights.T.astype(np.float64) / temperature, axis=1)


def kl_divergence(p_test: np.ndarray, p_support: np.ndarray) -> np.ndarray:
    """(N, M) KL(p_test_i || p_support_j) = sum_c p_i(c) (log p_i(c) - log p_j(c))."""
    eps = 1e-12
    return (p_test * np.log(p_test + eps)).sum(axis=1, keepdims=True) - p_test @ np.log(p_support + eps).T


def rescale_rows(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Min-max rescale each row of ``values`` into the range of the same row of ``target``.

    TIP-X's ``scale_`` takes min and max over the whole test batch, which makes one image's scores
    depend on the others in its batch; per row keeps every prediction a function of its own image.
    """
    lo, hi = values.min(axis=1, keepdims=True), values.max(axis=1, keepdims=True)
    t_lo, t_hi = target.min(axis=1, keepdims=True), target.max(axis=1, keepdims=True)
    return (values - lo) / np.maximum(hi - lo, 1e-12) * (t_hi - t_lo) + t_lo


class SupportSetAdapter(Head):
    """TIP-X over a labelled support set of images and/or captions (SuS-X, CapS-Adapter).

    ``fit(X, y, captions=None)``: ``X`` support image features, ``captions`` the text features of
    their captions (same rows; CapS). Affinity ``A = (1 - delta) f S_img^T + delta f S_cap^T``
    (delta = 1 with captions only: pass them as ``X`` and set ``delta=1``)::

        logits = logit_scale f W^T + gamma (-KL_s) L + alpha exp(-beta (1 - A)) L

    with ``KL_s`` the KL divergence between the class distributions softmax(f W^T / T) of the image
    and of each support item, rescaled into the range of A (per row), and L the one-hot support
    labels. Each of alpha, beta, gamma, delta fixed skips its search; the others are searched on
    validation over the reference grids (alpha 20 steps 0.1 to 50, beta 200 steps 1 to 50, gamma
    50 steps 0.1 to 30, delta 0, 0.1, ..., 1).

    Parameters
    ----------
    text_weights : array-like of shape (C, D), ZeroShotClassifier or None, default=None
        Zero-shot class weights whose rows follow the sorted labels, or a fitted ``ZeroShotClassifier``
        (its rows are reordered by class name).
    logit_scale : float > 0 or None, default=None
        Scale of the zero-shot logits; None takes the classifier's model scale, else 100.
    alpha, beta, gamma : float >= 0 or None, default=None
        Cache weight, affinity sharpness and KL weight; None searches each.
    delta : float in [0, 1] or None, default=None
        Weight of the caption affinities; None searches it when captions are given (else 0).
    temperature : float > 0, default=0.5
        Temperature T of the class distributions.
    search_step : array-like of 3 ints, default=(20, 200, 50)
        Grid steps for alpha, beta and gamma.
    val_fraction : float in (0, 1), default=0.25
        Share of each class carved from the training rows for the search when no ``X_val`` is given.
    random_state : int >= 0, default=0
        Seed of the validation carve.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    n_features_in_ : int
        Feature width D.
    support_images_ : ndarray of shape (M, D)
        Support image features.
    support_captions_ : ndarray of shape (M, D) or None
        Caption features of the support items.
    support_values_ : ndarray of shape (M, C)
        One-hot support labels.
    support_distributions_ : ndarray of shape (M, C)
        Class distributions of the support items.
    text_weights_ : ndarray of shape (C, D)
        Zero-shot weights in the order of ``classes_``.
    logit_scale_ : float
        The zero-shot logit scale used.
    alpha_, beta_, gamma_, delta_ : float
        The values used.
    val_accuracy_ : float or None
        Their validation accuracy (None when nothing was searched).
    """

    _parameter_constraints: dict = {
        **ZERO_SHOT_CONSTRAINTS,
        "alpha": [None, NON_NEGATIVE],
        "beta": [None, NON_NEGATIVE],
        "gamma": [None, NON_NEGATIVE],
        "delta": [None, PROBABILITY],
        "temperature": [POSITIVE],
        "search_step": ["array-like"],
        "val_fraction": [FRACTION],
        "random_state": [SEED],
    }

    def __init__(self, text_weights: Any = None, logit_scale: float | None = None, alpha: float | None = None,
                 beta: float | None = None, gamma: float | None = None, delta: float | None = None,
                 temperature: float = 0.5, search_step: tuple[int, int, int] = (20, 200, 50),
                 val_fraction: float = 0.25, random_state: int = 0):  # fmt: skip
        self.text_weights = text_weights
        self.logit_scale = logit_scale
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.delta = delta
        self.temperature = temperature
        self.search_step = search_step
        self.val_fraction = val_fraction
        self.random_state = random_state

    def _affinity(self, X: np.ndarray, delta: float) -> np.ndarray:
        A = X @ self.support_images_.T
        if self.support_captions_ is not None and delta:
            A = (1.0 - delta) * A + delta * (X @ self.support_captions_.T)
        return A

    def _parts(self, X: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(zero-shot logits, -rescaled KL @ L, affinity) for the rows of X."""
        A = self._affinity(X, delta)
        kl = kl_divergence(class_distributions(X, self.text_weights_, self.temperature), self.support_distributions_)
        return self.logit_scale_ * (X @ self.text_weights_.T), -rescale_rows(kl, A) @ self.support_values_, A

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None, captions: Any = None) -> "SupportSetAdapter":
        X, y_index = self._fit_inputs(X, y)
        text, self.logit_scale_ = resolve_zero_shot(self.text_weights, self.logit_scale, self.classes_, X.shape[1])
        if text is None:
            raise InputError("SupportSetAdapter ensembles with zero-shot: pass text_weights or a fitted ZeroShotClassifier")
        self.text_weights_ = text
        caps = None if captions is None else check_embeddings(captions, X.shape[1], name="captions")
        if caps is not None and len(caps) != len(X):
            raise InputError(f"captions has {len(caps)} rows for {len(X)} support images; pass one caption feature per image")
        n_alpha, n_beta, n_gamma = self.search_step
        grids = {
            "alpha": [self.alpha] if self.alpha is not None else reference_grid(50.0, n_alpha, 0.1),
            "beta": [self.beta] if self.beta is not None else reference_grid(50.0, n_beta, 1.0),
            "gamma": [self.gamma] if self.gamma is not None else reference_grid(30.0, n_gamma, 0.1),
            "delta": [self.delta] if self.delta is not None else (np.round(np.arange(11) / 10, 1) if caps is not None else [0.0]),
        }
        # without validation rows the first value of each grid is kept
        self.alpha_, self.beta_, self.gamma_, self.delta_ = (float(grids[k][0]) for k in ("alpha", "beta", "gamma", "delta"))
        self.val_accuracy_ = None
        searching = any(len(g) > 1 for g in grids.values())
        rows = np.arange(len(X))
        Xv = yv = None
        if searching:
            rows, Xv, yv, _ = validation_split(X, y_index, X_val, y_val, self.classes_, self.val_fraction, self.random_state)
        self._set_support(X[rows], y_index[rows], None if caps is None else caps[rows])
        if searching and len(Xv):
            self._search(Xv, yv, grids)
        self._set_support(X, y_index, caps)
        return self

    def _set_support(self, X: np.ndarray, y_index: np.ndarray, caps: np.ndarray | None) -> None:
        self.support_images_ = np.ascontiguousarray(X, dtype=np.float32)
        self.support_captions_ = caps
        self.support_values_ = one_hot(y_index, len(self.classes_))
        self.support_distributions_ = class_distributions(X, self.text_weights_, self.temperature)

    def _search(self, Xv: np.ndarray, yv: np.ndarray, grids: dict) -> None:
        alphas, betas, gammas = (np.asarray(grids[k], dtype=np.float64) for k in ("alpha", "beta", "gamma"))
        best = (-1.0, None)
        for delta in grids["delta"]:
            zero_shot, kl_term, A = self._parts(Xv, float(delta))
            Z = zero_shot[None] + gammas[:, None, None] * kl_term[None]  # (G, N, C)
            acc = np.zeros((len(betas), len(gammas), len(alphas)))
            for b, beta in enumerate(betas):
                lo, hi = correct_intervals(Z, np.exp(-beta * (1.0 - A)) @ self.support_values_, yv)
                acc[b] = ((lo[..., None] < alphas) & (alphas < hi[..., None])).mean(axis=-2)
            b, g, a = best_on_grid(acc)
            if acc[b, g, a] > best[0]:
                best = (float(acc[b, g, a]), (alphas[a], betas[b], gammas[g], delta))
        self.val_accuracy_ = best[0]
        self.alpha_, self.beta_, self.gamma_, self.delta_ = (float(v) for v in best[1])

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) TIP-X logits; columns follow ``classes_``."""
        X = self._checked(X)
        zero_shot, kl_term, A = self._parts(X, self.delta_)
        cache = np.exp(-self.beta_ * (1.0 - A)) @ self.support_values_
        return (zero_shot + self.gamma_ * kl_term + self.alpha_ * cache).astype(np.float32)
