"""Prompt learning: CoOp (learned context words) and CoCoOp (context conditioned on the image), reference c.

The image tower is frozen in both, so they train on image embeddings; the text tower runs on every
step through ``Model.text_features_from_embeddings``, which swaps the placeholder words of each
class prompt for the learned context vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import StrOptions

from cliplab.adapt._base import Head, validation_split
from cliplab.adapt.training import frozen, train_early_stopping, warmup_cosine
from cliplab.errors import InputError
from cliplab.validation import COUNT, FRACTION, POSITIVE, SEED

PLACEHOLDER = "X"  # the word whose embedding slots become context vectors (as CoOp's prompt prefix)
POSITIONS = ("end", "middle", "front")
PROMPT_CONSTRAINTS = {
    "model": "no_validation",
    "classnames": [None, Mapping, "array-like"],
    "n_ctx": [COUNT],
    "ctx_init": [None, str],
    "epochs": [COUNT],
    "lr": [POSITIVE],
    "batch_size": [COUNT],
    "patience": [COUNT],
    "val_fraction": [FRACTION],
    "random_state": [SEED],
}


def token_ids(tokens: Any) -> torch.Tensor:
    """The (N, L) id tensor of a token batch from ``Model.tokenize`` (a tensor or a dict of tensors)."""
    return tokens if isinstance(tokens, torch.Tensor) else tokens["input_ids"]


def repeat_tokens(tokens: Any, times: int) -> Any:
    """The token batch repeated ``times`` over (rows r, r + N, r + 2N, ...)."""
    if isinstance(tokens, torch.Tensor):
        return tokens.repeat(times, 1)
    return {k: v.repeat(times, 1) for k, v in tokens.items() if isinstance(v, torch.Tensor)}


def special_ids(model) -> set[int]:
    """Ids every text gets regardless of its words (start, end, padding)."""
    return set(token_ids(model.tokenize([""])).reshape(-1).tolist())


def word_ids(model, text: str) -> list[int]:
    """Ids of the words of ``text`` in order, without start/end/padding."""
    special = special_ids(model)
    return [i for i in token_ids(model.tokenize([text]))[0].tolist() if i not in special]


def prompt_text(name: str, n_ctx: int, position: str) -> str:
    """CoOp's prompt layouts: end ``X..X name.``; middle ``X.. name ..X.``; front ``name X..X.``."""
    ctx = [PLACEHOLDER] * n_ctx
    if position == "end":
        return " ".join([*ctx, name]) + "."
    if position == "front":
        return " ".join([name, *ctx]) + "."
    half = n_ctx // 2
    return " ".join([*ctx[:half], name, *ctx[half:]]) + "."


class ClassPrompts:
    """The class prompts tokenised once, with the (row, position) of every context slot."""

    def __init__(self, model, names: Sequence[str], n_ctx: int, position: str):
        if position not in POSITIONS:
            raise InputError(f"class_token_position={position!r}; use one of {', '.join(POSITIONS)}")
        (placeholder,) = word_ids(model, PLACEHOLDER)
        self.tokens = model.tokenize([prompt_text(n, n_ctx, position) for n in names])
        slots = token_ids(self.tokens) == placeholder
        counts = slots.sum(dim=1)
        if (counts != n_ctx).any():
            bad = names[int(torch.nonzero(counts != n_ctx)[0, 0])]
            raise InputError(f"the prompt of class {bad!r} does not keep {n_ctx} context slots (too long for the context, or the name contains {PLACEHOLDER!r})")
        self.rows, self.cols = torch.nonzero(slots, as_tuple=True)  # row-major: slots of a row in order
        self.n_classes, self.n_ctx = len(names), n_ctx

    def features(self, model, ctx: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """Normalised text features (repeats * C, D) with ``ctx`` ((repeats * C | 1), n_ctx, width) in the slots."""
        n = repeats * self.n_classes
        rows = torch.cat([self.rows + r * self.n_classes for r in range(repeats)])
        cols = self.cols.repeat(repeats)
        values = ctx.expand(n, -1, -1).reshape(n * self.n_ctx, -1)

        def edit(embeddings: torch.Tensor) -> torch.Tensor:
            return embeddings.index_put((rows.to(embeddings.device), cols.to(embeddings.device)), values.to(embeddings.dtype))

        tokens = self.tokens if repeats == 1 else repeat_tokens(self.tokens, repeats)
        return torch.nn.functional.normalize(model.text_features_from_embeddings(tokens, edit).float(), dim=-1)


def class_texts(classes: np.ndarray, classnames: Any, head: str) -> list[str]:
    """The text naming each class: ``classnames[label]`` (a mapping), the i-th name (a list in the
    order of the sorted labels) or the label itself when every label is a string. Labels such as
    0, 1, 2 name nothing, so without ``classnames`` they are refused (prompts "a photo of a 0."
    silently lose most of what the text tower knows)."""
    if classnames is None:
        if not all(isinstance(c, str) for c in classes.tolist()):
            shown = ", ".join(repr(c) for c in classes.tolist()[:3])
            raise InputError(f"{head} builds its prompts from class names but the labels ({shown}, ...) are not text; "
                             "pass classnames= (a {label: name} mapping, or one name per sorted label)")  # fmt: skip
        return [str(c) for c in classes]
    if isinstance(classnames, Mapping):
        missing = [c for c in classes.tolist() if c not in classnames]
        if missing:
            raise InputError(f"classnames has no entry for label {missing[0]!r}")
        return [str(classnames[c]) for c in classes.tolist()]
    names = list(classnames)
    if len(names) != len(classes):
        raise InputError(f"classnames has {len(names)} names for {len(classes)} classes; give one per sorted label")
    return [str(n) for n in names]


def initial_context(model, n_ctx: int, ctx_init: str | None, copies: int, seed: int) -> torch.Tensor:
    """(copies, n_ctx, width): the embeddings of ``ctx_init``'s words, or N(0, 0.02^2) draws (CoOp)."""
    embedding = model.token_embedding_module()
    if ctx_init:
        ids = torch.tensor(word_ids(model, ctx_init), device=embedding.weight.device)
        with torch.no_grad():
            ctx = embedding(ids).float().cpu()
        return ctx[None].repeat(copies, 1, 1)
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(copies, n_ctx, embedding.weight.shape[1], generator=gen) * 0.02


class _PromptHead(Head):
    def _setup(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y_index = self._fit_inputs(X, y)
        if X.shape[1] != self.model.embed_dim:
            raise InputError(f"X has {X.shape[1]} features but {self.model.name} embeds to {self.model.embed_dim}; embed with the same model")
        self.prompt_names_ = class_texts(self.classes_, self.classnames, type(self).__name__)
        self.n_ctx_ = len(word_ids(self.model, self.ctx_init)) if self.ctx_init else int(self.n_ctx)
        self.logit_scale_ = float(self.model.logit_scale)
        return X, y_index


class CoOp(_PromptHead):
    """CoOp: a learned context shared by the class prompts (or one per class), trained with CE.

    ``n_ctx`` context vectors (``ctx_init`` words such as "a photo of a" set both their number and
    their start; otherwise N(0, 0.02^2)), the class name at the ``class_token_position`` (end,
    middle, front), ``class_specific`` contexts optional. The logits are ``model.logit_scale *
    X @ T.T`` with T the normalised prompt features. SGD (momentum 0.9, weight decay 5e-4) with one
    warm-up epoch at 1e-5 then cosine, as the reference; the best epoch on validation is kept.
    ``X`` are image embeddings from ``model`` (augmented views may be added as extra rows).

    Parameters
    ----------
    model : cliplab Model
        The CLIP model the embeddings ``X`` come from (frozen; its text tower runs on every step).
    classnames : mapping, array-like of str or None, default=None
        The text naming each class: ``{label: name}``, one name per sorted label, or None when the
        labels are the names.
    n_ctx : int >= 1, default=16
        Number of context vectors (``ctx_init`` sets it when given).
    ctx_init : str or None, default=None
        Words whose embeddings start the context, e.g. "a photo of a"; None draws N(0, 0.02^2).
    class_token_position : {"end", "middle", "front"}, default="end"
        Where the class name sits among the context words.
    class_specific : bool, default=False
        One context per class instead of one shared.
    epochs : int >= 1, default=50
        Most epochs trained.
    lr : float > 0, default=0.002
        SGD learning rate after the warm-up epoch.
    batch_size : int >= 1, default=32
        Rows per step.
    patience : int >= 1, default=10
        Epochs without a better validation accuracy before stopping.
    val_fraction : float in (0, 1), default=0.25
        Share of each class held out for early stopping when no ``X_val`` is given.
    random_state : int >= 0, default=0
        Seed of the context initialisation, the validation carve and the batch order.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    n_features_in_ : int
        The model's embedding width D.
    prompt_names_ : list of str
        The class texts put in the prompts.
    n_ctx_ : int
        Number of context vectors.
    ctx_ : ndarray of shape (1 or C, n_ctx_, width)
        The learned context.
    text_weights_ : ndarray of shape (C, D)
        Normalised prompt features with the learned context.
    logit_scale_ : float
        The model's logit scale.
    best_epoch_ : int
        The epoch whose parameters were kept (0 = the initial ones).
    epochs_run_ : int
        Epochs trained.
    val_accuracy_ : float or None
        Validation accuracy of the best epoch (None without validation rows).
    """

    _parameter_constraints: dict = {
        **PROMPT_CONSTRAINTS,
        "class_token_position": [StrOptions(set(POSITIONS))],
        "class_specific": ["boolean"],
    }

    def __init__(self, model, classnames: Any = None, n_ctx: int = 16, ctx_init: str | None = None,
                 class_token_position: str = "end", class_specific: bool = False, epochs: int = 50,
                 lr: float = 0.002, batch_size: int = 32, patience: int = 10, val_fraction: float = 0.25,
                 random_state: int = 0):  # fmt: skip
        self.model = model
        self.classnames = classnames
        self.n_ctx = n_ctx
        self.ctx_init = ctx_init
        self.class_token_position = class_token_position
        self.class_specific = class_specific
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "CoOp":
        X, y_index = self._setup(X, y)
        rows, Xv, yv, _ = validation_split(X, y_index, X_val, y_val, self.classes_, self.val_fraction, self.random_state)
        prompts = ClassPrompts(self.model, self.prompt_names_, self.n_ctx_, self.class_token_position)
        copies = len(self.classes_) if self.class_specific else 1
        ctx = torch.nn.Parameter(initial_context(self.model, self.n_ctx_, self.ctx_init, copies, self.random_state))
        Xt, yt = torch.from_numpy(X[rows]), torch.from_numpy(y_index[rows])
        Xvt, scale = torch.from_numpy(Xv), self.logit_scale_

        def loss_on(batch: torch.Tensor) -> torch.Tensor:
            text = prompts.features(self.model, ctx).cpu()
            return torch.nn.functional.cross_entropy(scale * Xt[batch] @ text.T, yt[batch])

        def val_accuracy() -> float:
            with torch.no_grad():
                return float(((Xvt @ prompts.features(self.model, ctx).cpu().T).argmax(1).numpy() == yv).mean())

        steps_per_epoch = max(1, -(-len(Xt) // self.batch_size))
        opt = torch.optim.SGD([ctx], lr=self.lr, momentum=0.9, weight_decay=5e-4)
        with frozen(self.model.torch_module):
            result = train_early_stopping(
                [ctx], loss_on, val_accuracy if len(Xv) else None, len(Xt), optimizer=opt,
                scheduler=warmup_cosine(opt, self.epochs * steps_per_epoch, warmup_steps=steps_per_epoch),
                epochs=self.epochs, batch_size=self.batch_size, patience=self.patience, seed=self.random_state,
            )
            best = result.best_state[0]
            with torch.no_grad():
                self.text_weights_ = prompts.features(self.model, best).cpu().numpy().astype(np.float32)
        self.ctx_ = best.numpy().astype(np.float32)
        self.best_epoch_, self.epochs_run_, self.val_accuracy_ = result.best_epoch, result.epochs_run, result.best_val_accuracy
        return self

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) logits ``logit_scale * X @ text_weights_.T``."""
        X = self._checked(X)
        return np.float32(self.logit_scale_) * (X @ self.text_weights_.T)


class MetaNet(torch.nn.Module):
    """CoCoOp's meta-net: Linear(D, D/16) -> ReLU -> Linear(D/16, width); one bias per image."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        hidden = max(1, dim // 16)
        self.layers = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CoCoOp(_PromptHead):
    """CoCoOp: CoOp's context plus a per-image bias from a meta-net on the image embedding.

    Every image gets its own prompt set (``ctx + meta_net(x)`` in each slot), so prediction needs
    the model. Defaults follow the reference config (4 context words from "a photo of a",
    batch 1, 10 epochs, SGD lr 0.002 with one warm-up epoch then cosine).

    Parameters
    ----------
    model : cliplab Model
        The CLIP model the embeddings ``X`` come from (frozen; its text tower runs on every step).
    classnames : mapping, array-like of str or None, default=None
        The text naming each class: ``{label: name}``, one name per sorted label, or None when the
        labels are the names.
    n_ctx : int >= 1, default=4
        Number of context vectors (``ctx_init`` sets it when given).
    ctx_init : str or None, default="a photo of a"
        Words whose embeddings start the context; None draws N(0, 0.02^2).
    epochs : int >= 1, default=10
        Most epochs trained.
    lr : float > 0, default=0.002
        SGD learning rate after the warm-up epoch.
    batch_size : int >= 1, default=1
        Rows per step.
    patience : int >= 1, default=3
        Epochs without a better validation accuracy before stopping.
    val_fraction : float in (0, 1), default=0.25
        Share of each class held out for early stopping when no ``X_val`` is given.
    random_state : int >= 0, default=0
        Seed of the context and meta-net initialisation, the validation carve and the batch order.
    predict_batch_size : int >= 1, default=64
        Images scored at once (each brings its own prompt set).

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    n_features_in_ : int
        The model's embedding width D.
    prompt_names_ : list of str
        The class texts put in the prompts.
    n_ctx_ : int
        Number of context vectors.
    logit_scale_ : float
        The model's logit scale.
    ctx_ : ndarray of shape (1, n_ctx_, width)
        The learned context.
    meta_weights_ : ndarray of shape (n_meta,)
        The meta-net's parameters flattened into one float32 vector.
    best_epoch_ : int
        The epoch whose parameters were kept (0 = the initial ones).
    epochs_run_ : int
        Epochs trained.
    val_accuracy_ : float or None
        Validation accuracy of the best epoch (None without validation rows).
    """

    _parameter_constraints: dict = {**PROMPT_CONSTRAINTS, "predict_batch_size": [COUNT]}

    def __init__(self, model, classnames: Any = None, n_ctx: int = 4, ctx_init: str | None = "a photo of a",
                 epochs: int = 10, lr: float = 0.002, batch_size: int = 1, patience: int = 3,
                 val_fraction: float = 0.25, random_state: int = 0, predict_batch_size: int = 64):  # fmt: skip
        self.model = model
        self.classnames = classnames
        self.n_ctx = n_ctx
        self.ctx_init = ctx_init
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.predict_batch_size = predict_batch_size

    def _meta_net(self) -> MetaNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            return MetaNet(self.n_features_in_, self.model.token_embedding_module().weight.shape[1])

    def _logits(self, prompts: ClassPrompts, ctx: torch.Tensor, meta: MetaNet, x: torch.Tensor) -> torch.Tensor:
        contexts = ctx + meta(x)[:, None, :]  # (B, n_ctx, width): the same bias on every slot
        per_class = contexts[:, None].expand(-1, prompts.n_classes, -1, -1).reshape(-1, *ctx.shape[1:])
        text = prompts.features(self.model, per_class, repeats=len(x)).cpu().reshape(len(x), prompts.n_classes, -1)
        return self.logit_scale_ * torch.einsum("bd,bcd->bc", x, text)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "CoCoOp":
        X, y_index = self._setup(X, y)
        rows, Xv, yv, _ = validation_split(X, y_index, X_val, y_val, self.classes_, self.val_fraction, self.random_state)
        prompts = ClassPrompts(self.model, self.prompt_names_, self.n_ctx_, "end")
        ctx = torch.nn.Parameter(initial_context(self.model, self.n_ctx_, self.ctx_init, 1, self.random_state))
        meta = self._meta_net()
        Xt, yt = torch.from_numpy(X[rows]), torch.from_numpy(y_index[rows])
        params = [ctx, *meta.parameters()]

        def val_accuracy() -> float:
            return float((self._scores(prompts, ctx, meta, Xv).argmax(1) == yv).mean())

        steps_per_epoch = max(1, -(-len(Xt) // self.batch_size))
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=5e-4)
        with frozen(self.model.torch_module):
            result = train_early_stopping(
                params, lambda b: torch.nn.functional.cross_entropy(self._logits(prompts, ctx, meta, Xt[b]), yt[b]),
                val_accuracy if len(Xv) else None, len(Xt), optimizer=opt,
                scheduler=warmup_cosine(opt, self.epochs * steps_per_epoch, warmup_steps=steps_per_epoch),
                epochs=self.epochs, batch_size=self.batch_size, patience=self.patience, seed=self.random_state,
            )
        self.ctx_ = result.best_state[0].numpy().astype(np.float32)
        self.meta_weights_ = torch.cat([p.reshape(-1) for p in result.best_state[1:]]).numpy().astype(np.float32)
        self.best_epoch_, self.epochs_run_, self.val_accuracy_ = result.best_epoch, result.epochs_run, result.best_val_accuracy
        return self

    def _scores(self, prompts: ClassPrompts, ctx: torch.Tensor, meta: MetaNet, X: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(X), self.predict_batch_size):
                out.append(self._logits(prompts, ctx, meta, torch.from_numpy(X[start : start + self.predict_batch_size])).numpy())
        return np.concatenate(out) if out else np.zeros((0, prompts.n_classes), np.float32)

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) logits: each image scored against its own conditioned prompts."""
        X = self._checked(X)
        meta = self._meta_net()
        torch.nn.utils.vector_to_parameters(torch.from_numpy(self.meta_weights_), meta.parameters())
        prompts = ClassPrompts(self.model, self.prompt_names_, self.n_ctx_, "end")
        return self._scores(prompts, torch.from_numpy(self.ctx_), meta, X).astype(np.float32)
