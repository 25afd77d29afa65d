"""CLIP-SVD: fine-tune only the singular values of the towers' linear layers (reference d).

Every linear map W of both towers (attention q, k, v and output, MLP layers; ``Model.linear_weights``)
is written W = U diag(s) V^T; U, V stay frozen and only s is trained. The tuned weights exist only
inside :func:`singular_values_applied` (torch parametrizations, removed on exit), so the model
passed in is left as it was.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils.validation import check_is_fitted
from torch.nn.utils import parametrize

from cliplab.adapt._base import (
    REFERENCE_LOGIT_SCALE,
    Head,
    encode_labels,
    label_index,
)
from cliplab.adapt.prompt import PROMPT_CONSTRAINTS, class_texts
from cliplab.adapt.training import frozen, train_early_stopping
from cliplab.data.few_shot import stratified_split
from cliplab.errors import InputError
from cliplab.validation import NON_NEGATIVE, POSITIVE


class SingularValueWeight(torch.nn.Module):
    """Parametrization of one weight tensor: row blocks U_i diag(s_i) V_i^T stacked (one block for a
    Linear, three for q/k/v in ``in_proj_weight``)."""

    def __init__(self, factors: list[tuple[torch.Tensor, torch.Tensor]], values: list[torch.Tensor]):
        super().__init__()
        self.factors = factors
        self.values = values

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        blocks = [(u * s) @ vh for (u, vh), s in zip(self.factors, self.values)]
        return torch.cat(blocks, dim=0).to(original.dtype)


def decompose(model) -> tuple[list[str], dict[tuple[int, str], list[int]], list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    """SVD of every linear map: (names, weight key -> entry indices, factors (U, V^T), singular values)."""
    names, groups, factors, values = [], {}, [], []
    for entry in model.linear_weights():
        weight = getattr(entry.module, entry.param).detach()[entry.rows].float()
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        groups.setdefault((id(entry.module), entry.param), []).append(len(names))
        names.append(entry.name)
        factors.append((u, vh))
        values.append(s)
    return names, groups, factors, values


@contextmanager
def singular_values_applied(model, factors, groups, values: Sequence[torch.Tensor]) -> Iterator[None]:
    """Inside, every linear weight of ``model`` is U diag(values) V^T (gradients reach ``values``)."""
    modules = {}
    for entry in model.linear_weights():
        modules[(id(entry.module), entry.param)] = entry.module
    registered = []
    try:
        for key, indices in groups.items():
            module, param = modules[key], key[1]
            parametrize.register_parametrization(
                module, param, SingularValueWeight([factors[i] for i in indices], [values[i] for i in indices]), unsafe=True
            )
            registered.append((module, param))
        yield
    finally:
        for module, param in registered:
            parametrize.remove_parametrizations(module, param, leave_parametrized=False)


class CLIPSVD(Head):
    """CLIP-SVD head: singular values of both towers tuned with CE on ``logit_scale * f t^T``.

    Unlike the other heads, ``X`` holds **images** (PIL images, paths or uint8 arrays; or an
    already preprocessed NCHW float tensor): the image tower changes, so embeddings computed before
    cannot be reused. Text: one template per class (``template``), re-encoded every step, as the
    reference. AdamW(weight decay 0.01), cosine to 1e-6, best epoch on validation. The reference runs
    200 x shots iterations at lr 5e-4 on a GPU; to train in minutes on a CPU the default here is
    lr 1e-2 for at most 15 epochs (measured on the bundled model, position task, 16 shots: lr 5e-4
    for 10 epochs never left the zero-shot start, lr 1e-2 beat it).

    Parameters
    ----------
    model : cliplab Model
        The CLIP model whose singular values are tuned (its weights are left as they were).
    classnames : mapping, array-like of str or None, default=None
        The text naming each class: ``{label: name}``, one name per sorted label, or None when the
        labels are the names.
    template : str, default="a photo of a {}."
        The one prompt per class; ``{}`` is replaced by the class text.
    logit_scale : float > 0 or None, default=None
        Scale of the logits; None uses 100, the reference constant.
    epochs : int >= 1, default=15
        Most epochs trained.
    lr : float > 0, default=1e-2
        AdamW learning rate (cosine to 1e-6).
    weight_decay : float >= 0, default=0.01
        AdamW weight decay.
    batch_size : int >= 1, default=32
        Images per step.
    patience : int >= 1, default=4
        Epochs without a better validation accuracy before stopping.
    val_fraction : float in (0, 1), default=0.25
        Share of each class held out for early stopping when no ``X_val`` is given.
    random_state : int >= 0, default=0
        Seed of the validation carve and the batch order.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Sorted unique labels; score columns follow them.
    n_features_in_ : int
        The model's embedding width D.
    prompt_names_ : list of str
        The class texts.
    layer_names_ : list of str
        The tuned linear maps, in order.
    singular_values_ : ndarray of shape (n_values,)
        All tuned singular values, concatenated in ``layer_names_`` order.
    layer_sizes_ : ndarray of shape (n_layers,)
        How many values each layer has.
    logit_scale_ : float
        The logit scale used.
    best_epoch_ : int
        The epoch whose parameters were kept (0 = the initial ones).
    epochs_run_ : int
        Epochs trained.
    val_accuracy_ : float or None
        Validation accuracy of the best epoch (None without validation rows).
    """

    _parameter_constraints: dict = {
        **{k: v for k, v in PROMPT_CONSTRAINTS.items() if k not in ("n_ctx", "ctx_init")},
        "template": [str],
        "logit_scale": [None, POSITIVE],
        "weight_decay": [NON_NEGATIVE],
    }

    def __init__(self, model, classnames: Any = None, template: str = "a photo of a {}.", logit_scale: float | None = None,
                 epochs: int = 15, lr: float = 1e-2, weight_decay: float = 0.01, batch_size: int = 32,
                 patience: int = 4, val_fraction: float = 0.25, random_state: int = 0):  # fmt: skip
        self.model = model
        self.classnames = classnames
        self.template = template
        self.logit_scale = logit_scale
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state

    def _pixels(self, images: Any) -> torch.Tensor:
        if getattr(images, "ndim", None) == 2:  # (N, D): embeddings, which the tuned image tower cannot reuse
            raise InputError(f"CLIPSVD tunes the image tower, so it takes images, not embeddings (got an array of shape {tuple(images.shape)}); "
                             "pass the images (PIL images, paths, uint8 arrays or an NCHW tensor)")  # fmt: skip
        if isinstance(images, torch.Tensor):
            if images.ndim != 4:
                raise InputError(f"pixels must be an NCHW tensor, got shape {tuple(images.shape)}")
            return images.float()
        images = list(images)
        if not images:
            raise InputError("no images given")
        return self.model.preprocess_batch(images)

    def _features(self, pixels: torch.Tensor, tokens: Any) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.model.device
        image = torch.nn.functional.normalize(self.model.image_features(pixels.to(device)).float(), dim=-1)
        text = torch.nn.functional.normalize(self.model.text_features(tokens).float(), dim=-1)
        return image, text

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "CLIPSVD":
        pixels = self._pixels(X)
        self.classes_, y_index = encode_labels(y, len(pixels))
        self.n_features_in_ = int(self.model.embed_dim)
        self.prompt_names_ = class_texts(self.classes_, self.classnames, type(self).__name__)
        self.logit_scale_ = float(self.logit_scale if self.logit_scale is not None else REFERENCE_LOGIT_SCALE)
        if X_val is not None:
            val_pixels, yv = self._pixels(X_val), label_index(y_val, self.classes_, len(X_val))
            rows = np.arange(len(pixels))
        else:
            rows, val_rows = stratified_split(y_index, self.val_fraction, self.random_state, "val_fraction", keep_one=True)
            val_pixels, yv = pixels[val_rows], y_index[val_rows]
        names, groups, factors, initial = decompose(self.model)
        values = [torch.nn.Parameter(s.clone()) for s in initial]
        tokens = self.model.tokenize([self.template.format(n) for n in self.prompt_names_])
        train_pixels, yt = pixels[rows], torch.from_numpy(y_index[rows])

        def loss_on(batch: torch.Tensor) -> torch.Tensor:
            image, text = self._features(train_pixels[batch], tokens)
            return torch.nn.functional.cross_entropy(self.logit_scale_ * image @ text.T, yt[batch].to(image.device))

        def val_accuracy() -> float:
            with torch.no_grad():
                return float((self._scores(val_pixels, tokens).argmax(1) == yv).mean())

        steps = self.epochs * max(1, -(-len(rows) // self.batch_size))
        opt = torch.optim.AdamW(values, lr=self.lr, weight_decay=self.weight_decay, betas=(0.9, 0.999))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-6)
        with frozen(self.model.torch_module), singular_values_applied(self.model, factors, groups, values):
            was_training = self.model.torch_module.training
            try:
                result = train_early_stopping(
                    values, loss_on, val_accuracy if len(yv) else None, len(rows), optimizer=opt, scheduler=sched,
                    epochs=self.epochs, batch_size=self.batch_size, patience=self.patience, seed=self.random_state,
                )
            finally:
                self.model.torch_module.train(was_training)
        self.layer_names_ = names
        self.layer_sizes_ = np.array([len(s) for s in result.best_state], dtype=np.int64)
        self.singular_values_ = torch.cat(result.best_state).numpy().astype(np.float32)
        self.best_epoch_, self.epochs_run_, self.val_accuracy_ = result.best_epoch, result.epochs_run, result.best_val_accuracy
        return self

    def _scores(self, pixels: torch.Tensor, tokens: Any, batch_size: int = 256) -> np.ndarray:
        out = []
        # the singular values hold still while scoring: rebuild each weight once, not once per batch
        with torch.no_grad(), parametrize.cached():
            text = torch.nn.functional.normalize(self.model.text_features(tokens).float(), dim=-1)
            for start in range(0, len(pixels), batch_size):
                image = torch.nn.functional.normalize(self.model.image_features(pixels[start : start + batch_size].to(self.model.device)).float(), dim=-1)
                out.append((self.logit_scale_ * image @ text.T).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)), np.float32)

    @contextmanager
    def tuned(self) -> Iterator[None]:
        """Inside, ``self.model`` runs with the tuned singular values (e.g. to embed a collection)."""
        check_is_fitted(self, "singular_values_")
        names, groups, factors, _ = decompose(self.model)
        if names != list(self.layer_names_):
            raise InputError(f"the model's linear layers do not match the ones this head was fitted on ({self.model.name})")
        values = list(torch.from_numpy(self.singular_values_).split(self.layer_sizes_.tolist()))
        with singular_values_applied(self.model, factors, groups, values):
            yield

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) logits of the images ``X`` with the tuned model."""
        pixels = self._pixels(X)
        with self.tuned():
            tokens = self.model.tokenize([self.template.format(n) for n in self.prompt_names_])
            return self._scores(pixels, tokens).astype(np.float32)
