"""Non-transferable prompt learning: IP-CLIP (Wang et al., CVPR 2025, arXiv 2503.02393), reference §15.

A frozen CLIP keeps working on an *authorised* domain and becomes useless on *unauthorised* ones:
the learned "IP prompt" is built from each image's style (per-layer channel mean/std of the image
tower's tokens) and content (per-layer token mean), so images of another domain get other prompts,
and the loss rewards accuracy on the authorised domain and error on the unauthorised ones.

Built on CoOp's text plumbing (``cliplab.adapt.prompt.ClassPrompts``): the context slots of each
class prompt take the image's 2L + 4 tokens ([L style tokens, the same L again, 4 copies of one
content token], as the official ``ipclip_vitB16.py``), so the text tower runs once per image.

Deviations from the official code, on purpose:

- the style-enhancement branch (``INTER_Module``) is *trained* with the prompt learner; the
  official code leaves it randomly initialised and frozen (reference §15 pitfalls);
- its feature banks use zero-shot prompts ("a photo of a {name}.") to rank confidence, not the
  untrained random prompts;
- the two official trainers disagree on the signs of the enhanced terms; here the source-style view
  is kept correct (+CE) and the unauthorised-style view pushed wrong (-CE), the authorisation form;
- the prompt learner standardises its style and content inputs per (layer, channel) with the training
  images' statistics: the tiny towers' domain differences are small next to the channels' spread;
- the entropy is the plain softmax entropy (the official code L2-normalises over the batch first);
- the two maximised cross-entropies are clamped at 5 per image, then averaged (the official code clamps
  the batch mean, which stops pulling a batch once a few images are far past 5);
- the context tokens are scaled to the spread of the text tower's word embeddings (unscaled, the
  standardised inputs make them ~50x larger than words); with the per-image clamp (the two not
  measured apart), authorised accuracy on the benchmark's scenes (160 per domain) went 0.84 -> 0.94, CoOp's being 0.96.

Augmented views (``domain_features(..., n_views=V)``: random resized crop + flip, as the official
transforms) are drawn one per image and step when present; on the 64-px shape scenes they hurt
(160 scenes per domain: authorised 0.94 -> 0.87, unauthorised worst 0.58 -> 0.65 with 4 views), so the benchmark runs without.

The text-feature KL runs over the feature dimension, as the official code; on unit-length features its
softmax is nearly flat, so the term stays close to 0 (it is kept for fidelity, reported per epoch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from cliplab.adapt._base import encode_labels, label_index
from cliplab.adapt.io import SavableHead
from cliplab.adapt.prompt import ClassPrompts, class_texts
from cliplab.adapt.training import frozen, warmup_cosine
from cliplab.data.few_shot import stratified_split
from cliplab.errors import InputError
from cliplab.validation import (
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    ValidatedParams,
)

CONTENT_COPIES = 4  # the content token repeated 4 times (official code)
CLAMP = 5.0  # every subtracted term (and the style MSE) is clamped at 5 (official code)
FIELDS = ("embeddings", "style", "content")


# --- features ------------------------------------------------------------------------------------


@dataclass
class DomainFeatures:
    """What the frozen image tower gives per image: the normalised embedding (N, D), the per-layer
    style vector (N, L, W) = (channel mean + channel std over tokens) / 2, and the per-layer content
    vector (N, L, W) = channel mean over tokens. ``views``, when present, holds the same three for
    V augmented views of every image, each array with a view axis: (N, V, ...)."""

    embeddings: np.ndarray
    style: np.ndarray
    content: np.ndarray
    views: DomainFeatures | None = None

    def __len__(self) -> int:
        return len(self.embeddings)

    def take(self, rows: np.ndarray) -> DomainFeatures:
        views = None if self.views is None else self.views.take(rows)
        return DomainFeatures(self.embeddings[rows], self.style[rows], self.content[rows], views)

    @staticmethod
    def concat(parts: Sequence[DomainFeatures]) -> DomainFeatures:
        """The rows of every part; views are kept when every part has as many."""
        arrays = [np.concatenate([getattr(p, k) for p in parts]) for k in FIELDS]
        counts = {None if p.views is None else p.views.embeddings.shape[1] for p in parts}
        views = DomainFeatures.concat([p.views for p in parts]) if len(counts) == 1 and None not in counts else None
        return DomainFeatures(*arrays, views)

    def with_views(self) -> dict[str, torch.Tensor]:
        """Each field as a tensor (N, 1 + V, ...): the image itself first, then its views."""
        out = {}
        for k in FIELDS:
            own = getattr(self, k)[:, None]
            out[k] = torch.from_numpy(own if self.views is None else np.concatenate([own, getattr(self.views, k)], axis=1))
        return out


def layer_statistics(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's tokens (B, T, W) -> (style, content), each (B, W): IP-CLIP's domain token input
    is the global average of [mu; sigma] over the two statistics, i.e. (mu + sigma) / 2 (§15 step 2);
    the content input is mu (step 3)."""
    mu = hidden.float().mean(dim=1)
    sigma = hidden.float().std(dim=1, unbiased=False)
    return (mu + sigma) / 2, mu


def domain_features(model, images: Sequence[Any], batch_size: int = 64, n_views: int = 0, seed: int = 0) -> DomainFeatures:
    """Style, content and embedding of every image (PIL images, paths or arrays ``model`` prepares),
    and of ``n_views`` augmented views of each (random resized crop + flip, as the official
    transforms; seeded per image): training draws one of them per image and step, so the prompt
    cannot memorise the exact training images."""
    from cliplab.data.few_shot import augmented_views
    from cliplab.models.base import to_pil
    from cliplab.models.vision_parts import ViTParts, vision_parts

    images = list(images)
    if n_views:
        own = domain_features(model, images, batch_size)
        flat = [view for views in augmented_views([to_pil(im) for im in images], n_views, seed) for view in views]
        views = domain_features(model, flat, batch_size)
        return DomainFeatures(own.embeddings, own.style, own.content,
                              DomainFeatures(*(getattr(views, k).reshape(len(images), n_views, *getattr(views, k).shape[1:]) for k in FIELDS)))  # fmt: skip
    if not images:
        raise InputError("images is empty; pass at least one image")
    parts = vision_parts(model)
    if not isinstance(parts, ViTParts):
        raise InputError(f"{model.name}: NonTransferablePrompt reads every block of a ViT image tower; this one is a ResNet (use e.g. shapes-vit)")
    depth = len(parts.blocks)
    emb, style, content = [], [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            pixels = model.to_device(model.preprocess_batch(images[start : start + batch_size]))
            hidden, _ = parts.block_outputs(pixels, list(range(depth)))
            stats = [layer_statistics(h) for h in hidden]
            style.append(torch.stack([s for s, _ in stats], 1).cpu().numpy())
            content.append(torch.stack([c for _, c in stats], 1).cpu().numpy())
            emb.append(F.normalize(model.image_features(pixels).float(), dim=-1).cpu().numpy())
    return DomainFeatures(*(np.concatenate(a).astype(np.float32) for a in (emb, style, content)))


def one_view(fields: Mapping[str, torch.Tensor], rows: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """From ``DomainFeatures.with_views`` tensors (N, 1 + V, ...), one view of each of ``rows``, drawn
    uniformly (the image itself among them), the same view for every field."""
    pick = torch.randint(fields["embeddings"].shape[1], (len(rows),), generator=gen)
    return {k: v[rows, pick] for k, v in fields.items()}


def as_features(model, X: Any, name: str) -> DomainFeatures:
    if isinstance(X, DomainFeatures):
        return X
    if X is None or isinstance(X, (str, bytes, np.ndarray, torch.Tensor)) or not isinstance(X, Sequence):
        raise InputError(f"{name} must be a list of images or cliplab.adapt.nontransferable.domain_features(model, images); got {type(X).__name__}")
    return domain_features(model, X)


# --- modules -------------------------------------------------------------------------------------


class IPPromptLearner(torch.nn.Module):
    """Image -> 2L + 4 context tokens (§15 steps 2-4).

    Style: per layer ``Linear(W, H) -> Linear(H, width)`` (no activation) on (mu + sigma) / 2.
    Content: per layer ``Linear(W, width)`` on mu, then ``Linear(L, 1)`` over the layers, repeated 4x.
    The tokens enter the prompt times ``token_scale``, the spread of the text tower's word embeddings
    (a cliplab choice: unscaled, the standardised inputs give context vectors ~50x larger than the
    words', which drown the class name; the style distance is taken before that scale).
    """

    def __init__(self, layers: int, vision_width: int, text_width: int, hidden: int, generator: torch.Generator, token_scale: float = 1.0):
        super().__init__()
        self.register_buffer("token_scale", torch.tensor(float(token_scale)))

        def weight(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(*shape, generator=generator) * shape[-2] ** -0.5)

        self.style_down, self.style_down_bias = weight(layers, vision_width, hidden), torch.nn.Parameter(torch.zeros(layers, hidden))
        self.style_up, self.style_up_bias = weight(layers, hidden, text_width), torch.nn.Parameter(torch.zeros(layers, text_width))
        self.content_proj, self.content_bias = weight(layers, vision_width, text_width), torch.nn.Parameter(torch.zeros(layers, text_width))
        self.layer_mix = torch.nn.Parameter(torch.full((layers,), 1.0 / layers))
        self.layer_mix_bias = torch.nn.Parameter(torch.zeros(()))
        for name in ("style", "content"):  # per (layer, channel) standardisation, set by ``standardise``
            self.register_buffer(f"{name}_mean", torch.zeros(layers, vision_width))
            self.register_buffer(f"{name}_std", torch.ones(layers, vision_width))

    def standardise(self, feats: DomainFeatures) -> None:
        """Centre and scale the inputs with the training images' statistics (both domains pooled):
        the tiny towers' domain differences are small next to the channels' spread (a cliplab choice)."""
        for name in ("style", "content"):
            values = torch.from_numpy(getattr(feats, name))
            getattr(self, f"{name}_mean").copy_(values.mean(0))
            getattr(self, f"{name}_std").copy_(values.std(0).clamp_min(1e-6))

    def forward(self, style: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, W) each -> (context (B, 2L + 4, width), style tokens (B, L, width))."""
        style = (style - self.style_mean) / self.style_std
        content = (content - self.content_mean) / self.content_std
        hidden = torch.einsum("blw,lwh->blh", style, self.style_down) + self.style_down_bias
        style_tokens = torch.einsum("blh,lht->blt", hidden, self.style_up) + self.style_up_bias
        per_layer = torch.einsum("blw,lwt->blt", content, self.content_proj) + self.content_bias
        content_token = torch.einsum("blt,l->bt", per_layer, self.layer_mix) + self.layer_mix_bias
        ctx = torch.cat([style_tokens, style_tokens, content_token[:, None].expand(-1, CONTENT_COPIES, -1)], dim=1)
        return self.token_scale * ctx, style_tokens


class StyleEnhancement(torch.nn.Module):
    """IP-CLIP's ``INTER_Module`` (§15 step 6): attention from an image embedding to a class bank.

    ``q, k, v`` from one MLP (D -> 64 -> 64 -> 3D, BatchNorm, ReLU) run over the images and the bank
    together (so a one-image batch still has BatchNorm statistics); ``A = softmax(scale * q k^T)``;
    the output is ``normalise(f + post(A v))``. Trained here (the official module never is).
    """

    def __init__(self, dim: int, hidden: int = 64, scale: float = 0.1):
        super().__init__()
        self.dim, self.scale = dim, scale
        self.qkv = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, 3 * dim),
        )  # fmt: skip
        self.post = torch.nn.Linear(dim, dim)

    def forward(self, f: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        out = self.qkv(torch.cat([f, bank]))
        q = out[: len(f), : self.dim]
        k, v = out[len(f) :, self.dim : 2 * self.dim], out[len(f) :, 2 * self.dim :]
        attention = torch.softmax(self.scale * q @ k.T, dim=-1)
        return F.normalize(f + self.post(attention @ v), dim=-1)


# --- loss terms ----------------------------------------------------------------------------------


def clamped(value: torch.Tensor, limit: float = CLAMP) -> torch.Tensor:
    """``min(value, limit)``: once a maximised term passes ``limit`` its gradient is 0 (official code)."""
    return torch.clamp(value, max=limit)


def style_distance(style_s: torch.Tensor, style_t: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of paired authorised / unauthorised style tokens (B, L, width)."""
    return F.mse_loss(style_s, style_t)


def text_feature_kl(text_t: torch.Tensor, text_s: torch.Tensor) -> torch.Tensor:
    """KL(softmax(T_t) || softmax(T_s)) over the feature dimension, averaged over the (image, class)
    rows: the official code's KL runs over text-feature dimensions, not class probabilities (§15)."""
    p_t = F.softmax(text_t.reshape(-1, text_t.shape[-1]), dim=-1)
    log_p_s = F.log_softmax(text_s.reshape(-1, text_s.shape[-1]), dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean")


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the class probabilities (B, C) -> scalar."""
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1).mean()


def ip_clip_terms(
    logits_s: torch.Tensor, y_s: torch.Tensor, logits_t: torch.Tensor, y_t: torch.Tensor,
    enhanced_s: torch.Tensor, enhanced_t: torch.Tensor, style_s: torch.Tensor, style_t: torch.Tensor,
    text_s: torch.Tensor, text_t: torch.Tensor,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Every IP-CLIP loss term, unweighted and unclamped: ``ce_auth`` (CE on the authorised domain),
    ``ce_unauth`` (CE on the unauthorised one), ``ce_auth_style`` / ``ce_unauth_style`` (CE of the
    authorised images enhanced with each domain's bank, ``enhanced_*`` are (B, C) logits), ``style``
    (style-token MSE), ``entropy`` (of the unauthorised predictions) and ``kl`` (text features).
    The two maximised CE terms are per image, (B,), so the loss can clamp each image on its own."""
    return {
        "ce_auth": F.cross_entropy(logits_s, y_s),
        "ce_unauth": F.cross_entropy(logits_t, y_t, reduction="none"),
        "ce_auth_style": F.cross_entropy(enhanced_s, y_s),
        "ce_unauth_style": F.cross_entropy(enhanced_t, y_s, reduction="none"),
        "style": style_distance(style_s, style_t),
        "entropy": prediction_entropy(logits_t),
        "kl": text_feature_kl(text_t, text_s),
    }


def ip_clip_loss(terms: Mapping[str, torch.Tensor], style_weight: float = 0.1, entropy_weight: float = 0.01, kl_weight: float = 1.0) -> torch.Tensor:
    """IP-CLIP's objective (§15 step 7, enhanced-term signs as the authorisation trainer):
    ``CE_s - [CE_t] + CE(F_sa) - [CE(F_ta)] - w_style [MSE] + w_H H(p_t) - w_kl [KL]``, where ``[.]``
    is clamped at 5, so a term the loss maximises stops pulling once it passes 5.

    The maximised CE terms are clamped per image, then averaged (a deviation: the official code
    clamps the batch mean, so a few images pushed far past 5 silence the batch while the others stay
    correctly classified; per image, every unauthorised image is pushed until it is wrong)."""
    return (
        terms["ce_auth"] - clamped(terms["ce_unauth"]).mean() + terms["ce_auth_style"] - clamped(terms["ce_unauth_style"]).mean()
        - style_weight * clamped(terms["style"]) + entropy_weight * terms["entropy"] - kl_weight * clamped(terms["kl"])
    )  # fmt: skip


# --- metrics -------------------------------------------------------------------------------------


def nontransfer_metrics(acc_auth: float, acc_unauth: Mapping[str, float], n_classes: int,
                        baseline_auth: float | None = None, baseline_unauth: Mapping[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
    """Accuracies, chance level, drops against an unprotected baseline (e.g. CoOp), and
    ``cliplab_nt_score`` = mean unauthorised drop - authorised drop (in accuracy points / 100).

    ``cliplab_nt_score`` is cliplab's own summary, NOT the paper's W_ua (whose formula could not be
    recovered): higher is better, 1 - chance at best for a baseline that was perfect everywhere."""
    out: dict[str, Any] = {"acc_auth": float(acc_auth), "acc_unauth": {k: float(v) for k, v in acc_unauth.items()},
                           "acc_unauth_mean": float(np.mean(list(acc_unauth.values()))) if acc_unauth else None,
                           "chance": 1.0 / n_classes}  # fmt: skip
    if baseline_auth is not None and baseline_unauth is not None:
        drops = {k: float(baseline_unauth[k] - v) for k, v in acc_unauth.items()}
        out["drop_auth"] = float(baseline_auth - acc_auth)
        out["drop_unauth"] = drops
        out["cliplab_nt_score"] = float(np.mean(list(drops.values())) - out["drop_auth"])
    return out


# --- estimator -----------------------------------------------------------------------------------


class NonTransferablePrompt(SavableHead, ValidatedParams, ClassifierMixin, BaseEstimator):
    """IP-CLIP: an image-conditioned prompt that keeps a frozen CLIP accurate on the authorised domain
    and wrong on unauthorised ones (target-specified: both domains labelled).

    ``fit(X, y, X_unauth, y_unauth)``: ``X`` the authorised images, ``X_unauth`` the unauthorised
    ones (several domains may be pooled), each a list of images or ``domain_features(model, images)``.
    ``predict(X)`` works on either form. The text tower runs once per image (C prompts each).
    ``head.save(path)`` / ``NonTransferablePrompt.load(path, model=model)`` round-trip it exactly.

    Parameters
    ----------
    model : cliplab Model
        A CLIP model with a ViT image tower (frozen; every block is read, the text tower runs each step).
    classnames : mapping, array-like of str or None, default=None
        The text naming each class: ``{label: name}``, one name per sorted label, or None when the
        labels are the names.
    epochs : int >= 1, default=10
        Most epochs (one epoch = one pass over the authorised rows).
    lr : float > 0, default=0.01
        Adam learning rate after one warm-up epoch at 1e-5, cosine to 0 (official config).
    batch_size : int >= 1, default=8
        Authorised rows per step; as many unauthorised rows are drawn with them.
    style_weight : float >= 0, default=0.1
        Weight of the (clamped) style-token distance that is maximised.
    entropy_weight : float >= 0, default=0.01
        Weight of the unauthorised prediction entropy that is minimised.
    kl_weight : float >= 0, default=1.0
        Weight of the (clamped) text-feature KL that is maximised.
    logit_scale : float > 0 or None, default=100.0
        Scale of the cosine logits in training and prediction: the official code's fixed 100 (the
        loss's clamps at 5 assume it); None takes the model's own.
    bank_size : int >= 1, default=5
        Most confident images per class averaged into each domain's style bank.
    patience : int >= 1, default=10
        Epochs without a better validation score (authorised minus unauthorised accuracy) before stopping.
    val_fraction : float in (0, 1), default=0.2
        Share of each class of both domains held out for that score.
    random_state : int >= 0, default=0
        Seed of the initialisation, the validation carve and the batch order.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    prompt_names_ : list of str
        The class texts put in the prompts.
    logit_scale_ : float
        The logit scale used.
    n_layers_ : int
        Blocks of the image tower (L): the prompt has 2L + 4 context tokens.
    vision_shape_ : tuple of int
        (L, W): blocks and token width of the image tower the features come from.
    prompt_weights_ : ndarray of shape (n_weights,)
        The trained prompt learner's parameters and input statistics, flattened in its
        ``state_dict`` order into one float32 vector.
    best_epoch_ : int
        The epoch whose parameters were kept (0 = the initial ones).
    epochs_run_ : int
        Epochs trained.
    val_scores_ : dict or None
        Validation ``acc_auth`` and ``acc_unauth`` of the kept epoch (None without validation rows).
    loss_history_ : list of dict
        Mean of every loss term per epoch.
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "classnames": [None, Mapping, "array-like"],
        "epochs": [COUNT],
        "lr": [POSITIVE],
        "batch_size": [COUNT],
        "style_weight": [NON_NEGATIVE],
        "entropy_weight": [NON_NEGATIVE],
        "kl_weight": [NON_NEGATIVE],
        "logit_scale": [None, POSITIVE],
        "bank_size": [COUNT],
        "patience": [COUNT],
        "val_fraction": [FRACTION],
        "random_state": [SEED],
    }

    def __init__(self, model, classnames: Any = None, epochs: int = 10, lr: float = 0.01, batch_size: int = 8,
                 style_weight: float = 0.1, entropy_weight: float = 0.01, kl_weight: float = 1.0, logit_scale: float | None = 100.0,
                 bank_size: int = 5,
                 patience: int = 10, val_fraction: float = 0.2, random_state: int = 0):  # fmt: skip
        self.model = model
        self.classnames = classnames
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.style_weight = style_weight
        self.entropy_weight = entropy_weight
        self.kl_weight = kl_weight
        self.logit_scale = logit_scale
        self.bank_size = bank_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state

    # -- pieces

    def _learner(self, layers: int, width: int) -> IPPromptLearner:
        words = self.model.token_embedding_module().weight
        gen = torch.Generator().manual_seed(int(self.random_state))
        return IPPromptLearner(layers, width, words.shape[1], max(8, width // 3), gen, float(words.detach().float().std()))

    def _prompts(self) -> ClassPrompts:
        return ClassPrompts(self.model, self.prompt_names_, 2 * self.n_layers_ + CONTENT_COPIES, "end")

    def _text(self, prompts: ClassPrompts, learner: IPPromptLearner, style: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image text features (B, C, D) and style tokens (B, L, width)."""
        ctx, style_tokens = learner(style, content)
        per_class = ctx[:, None].expand(-1, prompts.n_classes, -1, -1).reshape(-1, *ctx.shape[1:])
        text = prompts.features(self.model, per_class, repeats=len(ctx)).cpu().reshape(len(ctx), prompts.n_classes, -1)
        return text, style_tokens

    def _bank(self, feats: DomainFeatures, y: np.ndarray | None) -> torch.Tensor:
        """(C, D): per class, the mean of the ``bank_size`` images most confidently given that class
        by zero-shot prompts (among the images labelled with it when ``y`` is given)."""
        weights = self.model.encode_texts([f"a photo of a {n}." for n in self.prompt_names_])
        prob = softmax(self.logit_scale_ * feats.embeddings @ np.asarray(weights, np.float32).T, axis=1)
        bank = []
        for c in range(len(self.classes_)):
            rows = np.flatnonzero(y == c) if y is not None and (y == c).any() else np.arange(len(feats))
            top = rows[np.argsort(-prob[rows, c], kind="stable")[: self.bank_size]]
            bank.append(feats.embeddings[top].mean(0))
        return F.normalize(torch.from_numpy(np.stack(bank)), dim=-1)

    def _scores(self, prompts: ClassPrompts, learner: IPPromptLearner, feats: DomainFeatures, batch: int = 64) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(feats), batch):
                part = feats.take(np.arange(start, min(start + batch, len(feats))))
                text, _ = self._text(prompts, learner, torch.from_numpy(part.style), torch.from_numpy(part.content))
                out.append((self.logit_scale_ * torch.einsum("bd,bcd->bc", torch.from_numpy(part.embeddings), text)).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)), np.float32)

    # -- fit / predict

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_unauth: Any, y_unauth: Any) -> NonTransferablePrompt:
        """Train on authorised ``X, y`` and unauthorised ``X_unauth, y_unauth`` (labels of the same classes)."""
        Xs, Xt = as_features(self.model, X, "X"), as_features(self.model, X_unauth, "X_unauth")
        if Xs.style.shape[1:] != Xt.style.shape[1:]:
            raise InputError("X and X_unauth come from different image towers; compute both with the same model")
        self.classes_, ys = encode_labels(y, len(Xs))
        if len(self.classes_) < 2:
            raise InputError("y has one class; NonTransferablePrompt needs at least two")
        yt = label_index(y_unauth, self.classes_, len(Xt))
        self.prompt_names_ = class_texts(self.classes_, self.classnames, type(self).__name__)
        self.logit_scale_ = float(self.model.logit_scale if self.logit_scale is None else self.logit_scale)
        self.n_layers_ = Xs.style.shape[1]
        s_fit, s_val = stratified_split(ys, self.val_fraction, self.random_state, "val_fraction", keep_one=True)
        t_fit, t_val = stratified_split(yt, self.val_fraction, self.random_state, "val_fraction", keep_one=True)
        prompts = self._prompts()
        learner = self._learner(*Xs.style.shape[1:])
        learner.standardise(DomainFeatures.concat([Xs.take(s_fit), Xt.take(t_fit)]))
        with torch.random.fork_rng(devices=[]):  # StyleEnhancement's default init, seeded locally
            torch.manual_seed(int(self.random_state))
            enhance = StyleEnhancement(Xs.embeddings.shape[1])
        bank_s, bank_t = self._bank(Xs.take(s_fit), ys[s_fit]), self._bank(Xt.take(t_fit), None)
        S, T = Xs.take(s_fit).with_views(), Xt.take(t_fit).with_views()  # (N, 1 + V, ...)
        ys_t, yt_t = torch.from_numpy(ys[s_fit]), torch.from_numpy(yt[t_fit])
        params = [*learner.parameters(), *enhance.parameters()]
        steps = max(1, -(-len(s_fit) // self.batch_size))
        opt = torch.optim.Adam(params, lr=self.lr)
        sched = warmup_cosine(opt, self.epochs * steps, warmup_steps=steps)
        gen = torch.Generator().manual_seed(int(self.random_state))
        scale = self.logit_scale_

        def validation() -> tuple[float, dict[str, float]] | None:
            if not len(s_val) or not len(t_val):
                return None
            learner.eval()
            acc_s = float((self._scores(prompts, learner, Xs.take(s_val)).argmax(1) == ys[s_val]).mean())
            acc_t = float((self._scores(prompts, learner, Xt.take(t_val)).argmax(1) == yt[t_val]).mean())
            return acc_s - acc_t, {"acc_auth": acc_s, "acc_unauth": acc_t}

        snapshot = lambda: {k: v.detach().clone() for k, v in learner.state_dict().items()}
        best = validation()
        best_state, best_epoch, waited, self.loss_history_ = snapshot(), 0, 0, []
        epoch = 0
        with frozen(self.model.torch_module):
            for epoch in range(1, self.epochs + 1):
                learner.train(), enhance.train()
                sums: dict[str, float] = {}
                for rows in torch.randperm(len(s_fit), generator=gen).split(self.batch_size):
                    trows = torch.randint(len(t_fit), (len(rows),), generator=gen)
                    s, t = one_view(S, rows, gen), one_view(T, trows, gen)
                    text_s, style_s = self._text(prompts, learner, s["style"], s["content"])
                    text_t, style_t = self._text(prompts, learner, t["style"], t["content"])
                    f_s, f_t = s["embeddings"], t["embeddings"]
                    logits = lambda f, text: scale * torch.einsum("bd,bcd->bc", f, text)
                    terms = ip_clip_terms(
                        logits(f_s, text_s), ys_t[rows], logits(f_t, text_t), yt_t[trows],
                        logits(enhance(f_s, bank_s), text_s), logits(enhance(f_s, bank_t), text_s),
                        style_s, style_t, text_s, text_t,
                    )  # fmt: skip
                    loss = ip_clip_loss(terms, self.style_weight, self.entropy_weight, self.kl_weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    for k, v in [*terms.items(), ("loss", loss)]:
                        sums[k] = sums.get(k, 0.0) + float(v.detach().mean()) / steps
                self.loss_history_.append(sums)
                current = validation()
                if current is None:
                    best_state, best_epoch = snapshot(), epoch
                elif current[0] > best[0]:
                    best, best_state, best_epoch, waited = current, snapshot(), epoch, 0
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
        self.prompt_weights_ = torch.cat([v.reshape(-1) for v in best_state.values()]).numpy().astype(np.float32)
        self.vision_shape_ = tuple(Xs.style.shape[1:])
        self.best_epoch_, self.epochs_run_ = best_epoch, epoch
        self.val_scores_ = None if best is None else best[1]
        return self

    def _fitted_learner(self) -> IPPromptLearner:
        check_is_fitted(self, "prompt_weights_")
        learner = self._learner(*self.vision_shape_)
        flat, state, start = torch.from_numpy(self.prompt_weights_), {}, 0
        for key, value in learner.state_dict().items():
            state[key] = flat[start : start + value.numel()].reshape(value.shape)
            start += value.numel()
        if start != len(flat):
            raise InputError(f"prompt_weights_ has {len(flat)} values but the prompt learner of {self.model.name} takes {start}; load with the model it was fitted on")
        learner.load_state_dict(state)
        return learner.eval()

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) logits, each image against its own prompts."""
        learner = self._fitted_learner()
        feats = as_features(self.model, X, "X")
        if tuple(feats.style.shape[1:]) != tuple(self.vision_shape_):
            raise InputError(f"X has {feats.style.shape[1:]} (layers, width) image-tower features but fit saw {self.vision_shape_}; use the same model")
        return self._scores(self._prompts(), learner, feats).astype(np.float32)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of ``class_scores``; columns follow ``classes_``."""
        return softmax(self.class_scores(X), axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """The most likely class of every image."""
        return self.classes_[self.class_scores(X).argmax(1)]
