"""Tip-Adapter and Tip-Adapter-F: a key-value cache of the few-shot features beside zero-shot (reference b)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import _fit_context

from cliplab.adapt._base import (
    ZERO_SHOT_CONSTRAINTS,
    Head,
    resolve_zero_shot,
    validation_split,
)
from cliplab.adapt.search import (
    ClassPaddedKeys,
    best_on_grid,
    grid_accuracy,
    reference_grid,
)
from cliplab.adapt.training import train_early_stopping
from cliplab.errors import InputError
from cliplab.validation import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, SEED


def one_hot(y_index: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y_index), n_classes), np.float32)
    out[np.arange(len(y_index)), y_index] = 1.0
    return out


class _CacheHead(Head):
    """Shared by Tip-Adapter(-F): the cache logits, the zero-shot part and the alpha/beta search."""

    def _cache_logits(self, X: np.ndarray) -> np.ndarray:
        affinity = X @ self.cache_keys_.T
        return np.exp(-np.float32(self.beta_) * (1.0 - affinity)) @ self.cache_values_

    def class_scores(self, X: Any) -> np.ndarray:
        """``logit_scale * X @ W.T + alpha * exp(-beta * (1 - X @ keys.T)) @ values``; columns follow ``classes_``."""
        X = self._checked(X)
        return np.float32(self.logit_scale_) * (X @ self.text_weights_.T) + np.float32(self.alpha_) * self._cache_logits(X)

    def _search(self, keys: np.ndarray, key_index: np.ndarray, Xv: np.ndarray, yv: np.ndarray) -> None:
        """Choose ``beta_``, ``alpha_`` on the validation rows over the reference grids."""
        s_beta, s_alpha = self.search_scale
        n_beta, n_alpha = self.search_step
        betas = [self.beta] if self.beta is not None else reference_grid(s_beta, n_beta, 0.1)
        alphas = [self.alpha] if self.alpha is not None else reference_grid(s_alpha, n_alpha, 0.1)
        cache = ClassPaddedKeys(keys, key_index, len(self.classes_))
        A = cache.affinity(Xv)
        acc = grid_accuracy(self.logit_scale_ * (Xv @ self.text_weights_.T), A, yv, alphas, betas)
        b, a = best_on_grid(acc)
        self.beta_, self.alpha_, self.val_accuracy_ = float(betas[b]), float(alphas[a]), float(acc[b, a])

    def _prepare(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y_index = self._fit_inputs(X, y)
        text, self.logit_scale_ = resolve_zero_shot(self.text_weights, self.logit_scale, self.classes_, X.shape[1])
        if text is None:
            raise InputError(f"{type(self).__name__} ensembles with zero-shot: pass text_weights (C x D) or a fitted ZeroShotClassifier")
        self.text_weights_ = text
        return X, y_index


class TipAdapter(_CacheHead):
    """Training-free Tip-Adapter: the few-shot features are the cache keys, their one-hot labels the values.

    ``class_scores(X) = logit_scale * X @ W.T + alpha * exp(-beta * (1 - X @ keys.T)) @ values``.
    ``alpha``/``beta`` fixed skip their search; otherwise each is searched on the validation rows
    (``X_val, y_val``, or ``val_fraction`` of each class carved from the training rows, after which
    the cache is rebuilt from all of them) over the reference grids
    ``beta in {0.1 + i (s_beta - 0.1) / 200}``, ``alpha in {0.1 + i (s_alpha - 0.1) / 20}``
    (``search_scale=(s_beta, s_alpha)``; the default (7, 3) is the ImageNet setting). Pass features
    averaged over augmented views, as the reference does (``cliplab.adapt.views.average_views``).

    Parameters
    ----------
    text_weights : array-like of shape (C, D), ZeroShotClassifier or None, default=None
        Zero-shot class weights whose rows follow the sorted labels, or a fitted ``ZeroShotClassifier``
        (its rows are reordered by class name).
    logit_scale : float > 0 or None, default=None
        Scale of the zero-shot logits; None takes the classifier's model scale, else 100.
    alpha : float >= 0 or None, default=None
        Residual ratio of the cache logits; None searches it.
    beta : float >= 0 or None, default=None
        Sharpness of the cache affinities; None searches it.
    init_alpha, init_beta : float >= 0, default=1.17, 1.0
        Values used before (or without) the search.
    search_scale : array-like of 2 floats, default=(7.0, 3.0)
        ``(s_beta, s_alpha)``, the upper ends of the reference grids.
    search_step : array-like of 2 ints, default=(200, 20)
        Number of grid steps for beta and alpha.
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
    cache_keys_ : ndarray of shape (N, D)
        The cache keys (training features).
    cache_values_ : ndarray of shape (N, C)
        One-hot labels of the keys.
    text_weights_ : ndarray of shape (C, D)
        Zero-shot weights in the order of ``classes_``.
    logit_scale_ : float
        The zero-shot logit scale used.
    alpha_, beta_ : float
        The residual ratio and sharpness used.
    val_accuracy_ : float or None
        Validation accuracy at (alpha_, beta_) (None when nothing was searched).
    """

    _parameter_constraints: dict = {
        **ZERO_SHOT_CONSTRAINTS,
        "alpha": [None, NON_NEGATIVE],
        "beta": [None, NON_NEGATIVE],
        "init_alpha": [NON_NEGATIVE],
        "init_beta": [NON_NEGATIVE],
        "search_scale": ["array-like"],
        "search_step": ["array-like"],
        "val_fraction": [FRACTION],
        "random_state": [SEED],
    }

    def __init__(self, text_weights: Any = None, logit_scale: float | None = None, alpha: float | None = None,
                 beta: float | None = None, init_alpha: float = 1.17, init_beta: float = 1.0,
                 search_scale: tuple[float, float] = (7.0, 3.0), search_step: tuple[int, int] = (200, 20),
                 val_fraction: float = 0.25, random_state: int = 0):  # fmt: skip
        self.text_weights = text_weights
        self.logit_scale = logit_scale
        self.alpha = alpha
        self.beta = beta
        self.init_alpha = init_alpha
        self.init_beta = init_beta
        self.search_scale = search_scale
        self.search_step = search_step
        self.val_fraction = val_fraction
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "TipAdapter":
        X, y_index = self._prepare(X, y)
        self.alpha_ = float(self.alpha if self.alpha is not None else self.init_alpha)
        self.beta_ = float(self.beta if self.beta is not None else self.init_beta)
        self.val_accuracy_ = None
        if self.alpha is None or self.beta is None:
            rows, Xv, yv, _ = validation_split(X, y_index, X_val, y_val, self.classes_, self.val_fraction, self.random_state)
            if len(Xv):
                self._search(X[rows], y_index[rows], Xv, yv)
        # the cache holds every training row (a carved validation part returns to it after the search)
        self.cache_keys_ = np.ascontiguousarray(X, dtype=np.float32)
        self.cache_values_ = one_hot(y_index, len(self.classes_))
        return self


class TipAdapterF(_CacheHead):
    """Tip-Adapter-F: Tip-Adapter whose cache keys are fine-tuned with cross-entropy.

    Training follows the reference: the logits of :class:`TipAdapter` at (init_alpha, init_beta),
    AdamW(lr, eps=1e-4), cosine schedule over ``epochs``, batches of ``batch_size`` shuffled with
    ``random_state``. The epoch kept is the best on the validation rows (early stopping after
    ``patience`` epochs without gain), never on test data; then alpha/beta are searched on the same
    validation rows with the tuned keys. ``fit(..., views=V)`` trains on augmented-view features
    V (N x n_views x D) of the cache rows instead of the rows themselves.

    Parameters
    ----------
    text_weights : array-like of shape (C, D), ZeroShotClassifier or None, default=None
        Zero-shot class weights whose rows follow the sorted labels, or a fitted ``ZeroShotClassifier``
        (its rows are reordered by class name).
    logit_scale : float > 0 or None, default=None
        Scale of the zero-shot logits; None takes the classifier's model scale, else 100.
    alpha : float >= 0 or None, default=None
        Residual ratio of the cache logits; None searches it.
    beta : float >= 0 or None, default=None
        Sharpness of the cache affinities; None searches it.
    init_alpha, init_beta : float >= 0, default=1.17, 1.0
        Values used before (or without) the search.
    search_scale : array-like of 2 floats, default=(7.0, 3.0)
        ``(s_beta, s_alpha)``, the upper ends of the reference grids.
    search_step : array-like of 2 ints, default=(200, 20)
        Number of grid steps for beta and alpha.
    lr : float > 0, default=1e-3
        AdamW learning rate.
    epochs : int >= 1, default=20
        Most epochs trained.
    batch_size : int >= 1, default=256
        Rows per step.
    patience : int >= 1, default=5
        Epochs without a better validation accuracy before stopping.
    val_fraction : float in (0, 1), default=0.25
        Share of each class carved from the training rows for the search when no ``X_val`` is given.
    random_state : int >= 0, default=0
        Seed of the validation carve and of the batch order.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    n_features_in_ : int
        Feature width D.
    cache_keys_ : ndarray of shape (N, D)
        The cache keys (training features, fine-tuned).
    cache_values_ : ndarray of shape (N, C)
        One-hot labels of the keys.
    text_weights_ : ndarray of shape (C, D)
        Zero-shot weights in the order of ``classes_``.
    logit_scale_ : float
        The zero-shot logit scale used.
    alpha_, beta_ : float
        The residual ratio and sharpness used.
    val_accuracy_ : float or None
        Validation accuracy at (alpha_, beta_) (None when nothing was searched).
    epochs_run_ : int
        Epochs trained.
    best_epoch_ : int
        The epoch whose keys were kept (0 = the untrained cache).
    """

    _parameter_constraints: dict = {
        **TipAdapter._parameter_constraints,
        "lr": [POSITIVE],
        "epochs": [COUNT],
        "batch_size": [COUNT],
        "patience": [COUNT],
    }

    def __init__(self, text_weights: Any = None, logit_scale: float | None = None, alpha: float | None = None,
                 beta: float | None = None, init_alpha: float = 1.17, init_beta: float = 1.0,
                 search_scale: tuple[float, float] = (7.0, 3.0), search_step: tuple[int, int] = (200, 20),
                 lr: float = 1e-3, epochs: int = 20, batch_size: int = 256, patience: int = 5,
                 val_fraction: float = 0.25, random_state: int = 0):  # fmt: skip
        self.text_weights = text_weights
        self.logit_scale = logit_scale
        self.alpha = alpha
        self.beta = beta
        self.init_alpha = init_alpha
        self.init_beta = init_beta
        self.search_scale = search_scale
        self.search_step = search_step
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None, views: Any = None) -> "TipAdapterF":
        X, y_index = self._prepare(X, y)
        if views is not None:
            views = np.asarray(views, dtype=np.float32)
            if views.ndim != 3 or views.shape[0] != len(X) or views.shape[2] != X.shape[1]:
                raise InputError(f"views must be (N, n_views, D) = ({len(X)}, *, {X.shape[1]}), got {views.shape}")
        # The validation rows choose the epoch and alpha/beta, so here they stay out of the cache.
        cache_rows, Xv, yv, _ = validation_split(X, y_index, X_val, y_val, self.classes_, self.val_fraction, self.random_state)
        keys = X[cache_rows]
        key_index = y_index[cache_rows]
        if views is not None:
            train_X = views[cache_rows].reshape(-1, X.shape[1])
            train_y = np.repeat(key_index, views.shape[1])
        else:
            train_X, train_y = keys, key_index
        self.cache_values_ = one_hot(key_index, len(self.classes_))
        self.alpha_ = float(self.alpha if self.alpha is not None else self.init_alpha)
        self.beta_ = float(self.beta if self.beta is not None else self.init_beta)
        self.cache_keys_ = self._train_keys(keys, train_X, train_y, Xv, yv)
        self.val_accuracy_ = None
        if len(Xv) and (self.alpha is None or self.beta is None):
            self._search(self.cache_keys_, key_index, Xv, yv)
        return self

    def _train_keys(self, keys: np.ndarray, train_X: np.ndarray, train_y: np.ndarray, Xv: np.ndarray, yv: np.ndarray) -> np.ndarray:
        W = torch.from_numpy(self.text_weights_)
        values = torch.from_numpy(self.cache_values_)
        key_param = torch.nn.Parameter(torch.from_numpy(keys.copy()))
        opt = torch.optim.AdamW([key_param], lr=self.lr, eps=1e-4)
        steps = self.epochs * max(1, -(-len(train_X) // self.batch_size))
        Xt, yt, Xvt = torch.from_numpy(train_X), torch.from_numpy(train_y), torch.from_numpy(Xv)
        scale, alpha, beta = float(self.logit_scale_), self.alpha_, self.beta_

        def logits(x: torch.Tensor) -> torch.Tensor:
            return scale * x @ W.T + alpha * torch.exp(-beta * (1.0 - x @ key_param.T)) @ values

        def val_accuracy() -> float:
            with torch.no_grad():
                return float((logits(Xvt).argmax(1).numpy() == yv).mean())

        result = train_early_stopping(
            [key_param], lambda rows: torch.nn.functional.cross_entropy(logits(Xt[rows]), yt[rows]),
            val_accuracy if len(Xv) else None, len(Xt),
            optimizer=opt, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
            epochs=self.epochs, batch_size=self.batch_size, patience=self.patience, seed=self.random_state,
        )
        self.best_epoch_, self.epochs_run_ = result.best_epoch, result.epochs_run
        return result.best_state[0].numpy().astype(np.float32)
