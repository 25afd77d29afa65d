"""One-class inspection from good samples only: Hyp-OC (reference i), kNN and Gaussian baselines.

Every detector is fitted on embeddings of good samples and gives ``anomaly_score(X)`` (higher =
more anomalous), ``score_samples(X)`` (its negation, scikit-learn's outlier convention) and
``predict(X)`` (+1 good, -1 anomaly at the threshold that flags ``fpr`` of the good training rows).
:func:`one_class_metrics` scores them: AUROC, AUPR and FPR at 95% TPR.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.covariance import LedoitWolf
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.utils.validation import check_is_fitted

from cliplab.adapt._base import check_features
from cliplab.adapt.io import SavableHead
from cliplab.errors import InputError
from cliplab.validation import COUNT, POSITIVE, PROBABILITY, SEED, ValidatedParams


def one_class_metrics(anomaly_scores: Any, is_anomaly: Any) -> dict[str, float]:
    """AUROC, AUPR (anomalies are the positives) and the FPR at 95% TPR: the fraction of good
    samples flagged at the first threshold that catches 95% of the anomalies."""
    scores, positive = np.asarray(anomaly_scores, dtype=np.float64), np.asarray(is_anomaly, dtype=bool)
    if positive.all() or not positive.any():
        raise InputError("one-class metrics need both good and anomalous samples")
    fpr, tpr, _ = roc_curve(positive, scores)
    return {
        "auroc": float(roc_auc_score(positive, scores)),
        "aupr": float(average_precision_score(positive, scores)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


class _OneClass(SavableHead, ValidatedParams, OutlierMixin, BaseEstimator):
    def _fit_inputs(self, X: Any) -> np.ndarray:
        X = check_features(X)
        if len(X) < 2:
            raise InputError("one-class detectors need at least two good samples")
        self.n_features_in_ = X.shape[1]
        return X

    def _set_threshold(self, train_scores: np.ndarray) -> None:
        self.threshold_ = float(np.quantile(train_scores, 1.0 - self.fpr))

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality (higher = more like the good samples)."""
        return -self.anomaly_score(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """Positive for good samples, negative for anomalies (``threshold_ - anomaly_score``)."""
        scores = self.anomaly_score(X)  # checks fitted first
        return self.threshold_ - scores

    def predict(self, X: Any) -> np.ndarray:
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def _checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "threshold_")
        return check_features(X, self.n_features_in_)


class KNNOneClass(_OneClass):
    """Anomaly score = mean cosine distance to the ``k`` nearest good samples.

    Parameters
    ----------
    k : int >= 1, default=5
        Number of nearest good samples averaged.
    fpr : float in [0, 1], default=0.05
        Share of the good training rows flagged by ``predict`` (sets ``threshold_``).

    Attributes
    ----------
    n_features_in_ : int
        Feature width D.
    memory_ : ndarray of shape (N, D)
        The good samples.
    threshold_ : float
        Anomaly score above which a sample is flagged (``fpr`` of the good rows, scored
        leave-one-out, exceed it).
    """

    _parameter_constraints: dict = {"k": [COUNT], "fpr": [PROBABILITY]}

    def __init__(self, k: int = 5, fpr: float = 0.05):
        self.k = k
        self.fpr = fpr

    def _distances(self, X: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        d = 1.0 - X @ self.memory_.T
        if exclude_self:
            np.fill_diagonal(d, np.inf)
        k = min(self.k, len(self.memory_) - int(exclude_self))
        return np.sort(np.partition(d, k - 1, axis=1)[:, :k], axis=1).mean(axis=1)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> "KNNOneClass":
        X = self._fit_inputs(X)
        self.memory_ = X
        self._set_threshold(self._distances(X, exclude_self=True))
        return self

    def anomaly_score(self, X: Any) -> np.ndarray:
        return self._distances(self._checked(X))


class GaussianOneClass(_OneClass):
    """Anomaly score = squared Mahalanobis distance to the good samples' mean (Ledoit-Wolf covariance).

    Parameters
    ----------
    fpr : float in [0, 1], default=0.05
        Share of the good training rows flagged by ``predict`` (sets ``threshold_``).

    Attributes
    ----------
    n_features_in_ : int
        Feature width D.
    location_ : ndarray of shape (D,)
        Mean of the good samples.
    precision_ : ndarray of shape (D, D)
        Ledoit-Wolf inverse covariance.
    threshold_ : float
        Anomaly score above which a sample is flagged.
    """

    _parameter_constraints: dict = {"fpr": [PROBABILITY]}

    def __init__(self, fpr: float = 0.05):
        self.fpr = fpr

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> "GaussianOneClass":
        X = self._fit_inputs(X)
        cov = LedoitWolf().fit(X.astype(np.float64))
        self.location_ = cov.location_.astype(np.float32)
        self.precision_ = cov.precision_.astype(np.float32)
        self._set_threshold(self._mahalanobis(X))
        return self

    def _mahalanobis(self, X: np.ndarray) -> np.ndarray:
        Z = X - self.location_
        return np.einsum("nd,de,ne->n", Z, self.precision_, Z)

    def anomaly_score(self, X: Any) -> np.ndarray:
        return self._mahalanobis(self._checked(X))


# --- Poincare ball (curvature c) -------------------------------------------------------------------
def mobius_add(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """x (+)_c y (reference i, with its 1e-5 in the denominator)."""
    xy = (x * y).sum(-1, keepdim=True)
    x2, y2 = (x * x).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True)
    return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c**2 * x2 * y2 + 1e-5)


def expmap0(u: torch.Tensor, c: float) -> torch.Tensor:
    norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    return torch.tanh(math.sqrt(c) * norm) * u / (math.sqrt(c) * norm)


def expmap(x: torch.Tensor, u: torch.Tensor, c: float) -> torch.Tensor:
    norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    lam = 2.0 / (1.0 - c * (x * x).sum(-1, keepdim=True)).clamp_min(1e-5)
    return mobius_add(x, torch.tanh(math.sqrt(c) * lam * norm / 2) * u / (math.sqrt(c) * norm), c)


def project(x: torch.Tensor, c: float, eps: float = 1e-3) -> torch.Tensor:
    """Pull points back inside the ball of radius (1 - eps) / sqrt(c)."""
    limit = (1 - eps) / math.sqrt(c)
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    return torch.where(norm > limit, x / norm * limit, x)


def poincare_distance(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """d_c(x, y) = (2 / sqrt c) artanh(sqrt c ||(-x) (+)_c y||).

    The official Hyp-OC code uses arctan here; that is not the Poincare distance (a bug), so this
    uses artanh (argument clamped below 1 for stability).
    """
    arg = (math.sqrt(c) * mobius_add(-x, y, c).norm(dim=-1)).clamp(max=1 - 1e-5)
    return 2.0 / math.sqrt(c) * torch.atanh(arg)


def clip_features(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean feature clipping: x * min(1, r / ||x||)."""
    return x * torch.clamp(radius / x.norm(dim=-1, keepdim=True).clamp_min(1e-5), max=1.0)


class HyperbolicMLR(torch.nn.Module):
    """Multinomial logistic regression in the Poincare ball (Ganea et al.; Hyp-OC's HyperbolicMLR)."""

    def __init__(self, dim: int, n_classes: int, c: float):
        super().__init__()
        self.p_vals = torch.nn.Parameter(torch.zeros(n_classes, dim))
        self.a_vals = torch.nn.Parameter(torch.randn(n_classes, dim) * 0.05)
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, sc = self.c, math.sqrt(self.c)
        p = expmap0(self.p_vals, c)  # (K, d)
        p2 = (p * p).sum(-1)
        a = self.a_vals * (1 - c * p2)[:, None]
        a_norm = a.norm(dim=-1).clamp_min(1e-5)
        lam_p = 2.0 / (1 - c * p2)
        diff = mobius_add(-p[None], x[:, None], c)  # (N, K, d)
        diff2 = (diff * diff).sum(-1)
        inner = (diff * a[None]).sum(-1)
        return lam_p * a_norm / sc * torch.asinh(2 * sc * inner / ((1 - c * diff2) * a_norm))


class HypOCNet(torch.nn.Module):
    """MLP -> Euclidean clipping -> Poincare ball (expmap at a learnable point) -> hyperbolic MLR."""

    def __init__(self, dim: int, hidden: Sequence[int], ball_dim: int, c: float, clip_r: float):
        super().__init__()
        sizes = [dim, *hidden, ball_dim]
        layers: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        self.mlp = torch.nn.Sequential(*layers[:-1])
        self.xp = torch.nn.Parameter(torch.zeros(ball_dim))
        self.mlr = HyperbolicMLR(ball_dim, 2, c)
        self.c, self.clip_r = c, clip_r

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        u = clip_features(self.mlp(x), self.clip_r)
        base = project(expmap0(self.xp, self.c), self.c)
        return project(expmap(base.expand_as(u), u, self.c), self.c)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return z, self.mlr(z)


class HypOneClass(_OneClass):
    """Hyp-OC: hyperbolic one-class classifier trained against Gaussian pseudo-negatives.

    Each batch of good features is joined by as many pseudo-negatives drawn from
    N(m, noise_std^2 I) and L2-normalised like the features, m a running mean of the good features (weight ``mean_momentum`` on the
    past; the reference blends only the previous batch's mean, we keep a true running mean). The
    network maps features through an MLP, clips them to norm ``clip_r`` and sends them into the
    Poincare ball (curvature ``c``). Loss = Hyp-CE (hyperbolic MLR, good = 0, pseudo-negative = 1)
    + Hyp-PC (mean Poincare distance between paired good samples). Anomaly score = the softmax
    probability of the pseudo-negative class. Adam, gradient norm clipped at 3.

    Parameters
    ----------
    hidden : array-like of int, default=(128,)
        Widths of the MLP's hidden layers.
    ball_dim : int >= 1, default=32
        Dimension of the Poincare ball.
    c : float > 0, default=0.1
        Curvature of the ball.
    clip_r : float > 0, default=2.0
        Euclidean feature clipping radius.
    noise_std : float > 0 or None, default=None
        Spread of the pseudo-negatives; None uses 4x the good features' per-dimension spread.
    mean_momentum : float in [0, 1], default=0.8
        Weight of the past in the running mean of the good features.
    epochs : int >= 1, default=30
        Epochs trained.
    batch_size : int >= 1, default=32
        Good rows per step.
    lr : float > 0, default=1e-3
        Adam learning rate.
    fpr : float in [0, 1], default=0.05
        Share of the good training rows flagged by ``predict`` (sets ``threshold_``).
    random_state : int >= 0, default=0
        Seed of the network initialisation, the batch order and the pseudo-negatives.

    Attributes
    ----------
    n_features_in_ : int
        Feature width D.
    network_weights_ : ndarray of shape (n_weights,)
        All network parameters flattened, float32.
    noise_std_ : float
        The pseudo-negative spread used.
    threshold_ : float
        Anomaly score above which a sample is flagged.
    final_loss_ : float
        Loss of the last step.
    """

    _parameter_constraints: dict = {
        "hidden": ["array-like"],
        "ball_dim": [COUNT],
        "c": [POSITIVE],
        "clip_r": [POSITIVE],
        "noise_std": [None, POSITIVE],
        "mean_momentum": [PROBABILITY],
        "epochs": [COUNT],
        "batch_size": [COUNT],
        "lr": [POSITIVE],
        "fpr": [PROBABILITY],
        "random_state": [SEED],
    }

    def __init__(self, hidden: Sequence[int] = (128,), ball_dim: int = 32, c: float = 0.1, clip_r: float = 2.0,
                 noise_std: float | None = None, mean_momentum: float = 0.8, epochs: int = 30, batch_size: int = 32,
                 lr: float = 1e-3, fpr: float = 0.05, random_state: int = 0):  # fmt: skip
        self.hidden = hidden
        self.ball_dim = ball_dim
        self.c = c
        self.clip_r = clip_r
        self.noise_std = noise_std
        self.mean_momentum = mean_momentum
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.fpr = fpr
        self.random_state = random_state

    def _network(self) -> HypOCNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            return HypOCNet(self.n_features_in_, list(self.hidden), self.ball_dim, self.c, self.clip_r)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> "HypOneClass":
        X = self._fit_inputs(X)
        # default spread: 4x the good features' per-dimension spread (CLIP features are unit vectors, so the
        # reference's std 1 on 4096-d VGG activations has no meaning here; at 1x the pseudo-negatives
        # are indistinguishable from the good samples and the detector learns nothing useful)
        self.noise_std_ = float(self.noise_std if self.noise_std is not None else 4.0 * X.std(axis=0).mean())
        net = self._network()
        gen = torch.Generator().manual_seed(int(self.random_state))
        Xt = torch.from_numpy(X)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        running = None
        for _ in range(self.epochs):
            for rows in torch.randperm(len(Xt), generator=gen).split(self.batch_size):
                real = Xt[rows]
                batch_mean = real.mean(0)
                running = batch_mean if running is None else self.mean_momentum * running + (1 - self.mean_momentum) * batch_mean
                fake = running + self.noise_std_ * torch.randn(real.shape, generator=gen)
                # CLIP features lie on the unit sphere; off-sphere negatives would teach "norm != 1"
                fake = torch.nn.functional.normalize(fake, dim=-1)
                z, logits = net(torch.cat([real, fake]))
                labels = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))]).long()
                loss = torch.nn.functional.cross_entropy(logits, labels)
                half = len(real) // 2
                if half:
                    loss = loss + poincare_distance(z[:half], z[half : 2 * half], self.c).mean()  # Hyp-PC
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 3.0)
                opt.step()
                running = running.detach()
        self.final_loss_ = float(loss.detach())
        self.network_weights_ = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().astype(np.float32)
        self.threshold_ = 0.0  # set from the training scores below
        self._set_threshold(self.anomaly_score(X))
        return self

    def anomaly_score(self, X: Any) -> np.ndarray:
        X = self._checked(X)
        net = self._network()
        torch.nn.utils.vector_to_parameters(torch.from_numpy(self.network_weights_), net.parameters())
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(X))[1], dim=1)[:, 1].numpy().astype(np.float64)
