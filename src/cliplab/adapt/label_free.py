"""NoLA, label-free adaptation (Imam et al., "CLIP meets DINO for Tuning Zero-Shot Classifier using
Unlabeled Image Collections", 2024; fazliimam/NoLA): class names and unlabelled images, no labels.

1. Description-based text classifier (NoLA's "DCT", ``gen_emb``): for each class, the templates
   filled with its name plus its descriptions are encoded, normalised, averaged, normalised.
2. Confident set (``select_top_k``): the k images predicted as each class with the highest
   probability, k = max(16, floor(0.2 N / C)); a class nobody predicts takes the images whose 2nd,
   then 3rd choice it is; duplicates dropped (:func:`confident_per_class`).
3. Labelling network ("Taal") on a self-supervised encoder's frozen features: MLP d -> 256 -> ReLU
   -> C, CE on the confident set, Adam 1e-3, 50 epochs, batch 32 (``labeller="mlp"``); or, the
   default here, an L2-regularised linear softmax classifier (``labeller="linear"``).
4. Student: CLIP's image tower with its normalisation layers' affine parameters trainable
   (NoLA tunes every visual LayerNorm; a convolutional tower's batch norms are tuned in eval mode,
   their running statistics fixed), its positional embeddings (see below) and a linear head
   initialised with the text classifier; AdamW, lr 0.004 (NoLA's), cosine to 0. Loss:
   label-smoothing CE (0.1) of the student on a strong view against the labeller's pseudo-label of
   the weak (clean) view, FixMatch-style, on every image, no confidence threshold.

Differences from the official code, on purpose:

- The default labeller is linear and regularised (L2, ``labeller_c``): the confident set's
  pseudo-labels are noisy (62 % right on the position benchmark) and NoLA's MLP, 50 epochs on ~150
  images, learns the noise by heart, where a regularised linear map on spatial features generalises
  past it (labeller test accuracy 0.65 -> 0.86 on ``benchmarks/label_free.py`` position, same
  features and confident set).
- No VPT prompt tokens (NoLA: 16 by its config): the student tunes the tower's positional
  embeddings instead (``tune="norms+positions"``; ``"norms"`` leaves them). VPT adds tokens at the
  input of a ViT, which a convolutional tower does not have; the positional embedding is the token
  level input both kinds have (a ResNet's attention pool has one), and it is what lets the student
  learn classes that are places: with true labels as targets (a diagnostic), the bundled ResNet's
  student reached 0.96 on position with them and 0.88 without; with the labeller's pseudo-labels on
  ``benchmarks/label_free.py``, position 0.749 against 0.713 and size 0.624 against 0.642.
- No labelled validation set for checkpoint selection (NoLA's "label-free" code selects on
  validation labels): the last epoch is kept.
- The strong view is photometric by default (jitter, blur, noise) because crops, flips and
  perspective change size and position labels, as the reference warns for hue jitter on colour
  tasks (``augment="crop"`` adds NoLA's crop and flip).
- The student's logits are the scaled cosine ``logit_scale * f W^T`` rather than raw ``f W^T``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from cliplab.adapt.training import frozen
from cliplab.errors import InputError
from cliplab.validation import COUNT, NON_NEGATIVE, POSITIVE, SEED, ValidatedParams, check_classnames
from cliplab.zeroshot.descriptors import load_descriptors
from cliplab.zeroshot.templates import ensemble_text_weights, fill_template, resolve_templates

NORM_TYPES = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
AUGMENTS = ("photometric", "crop")
LABELLERS = ("linear", "mlp")
TUNES = ("norms+positions", "norms")
POSITION_NAMES = ("positional_embedding", "position_embedding", "pos_embed")  # open_clip, transformers, timm


def confident_per_class(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NoLA's ``select_top_k``: rows and pseudo-labels of the confident set.

    For each class c, the ``k`` rows predicted as c with the highest ``probs[:, c]``; a class that
    is nobody's first choice takes its k best rows among those whose 2nd, then 3rd, choice it is.
    A row is kept once (its first class in this order). Returns ``(rows, labels)``, sorted by row.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] == 0:
        raise InputError(f"probs must be an (N, C) array, got shape {probs.shape}")
    order = np.argsort(-probs, axis=1, kind="stable")
    chosen: dict[int, int] = {}
    for c in range(probs.shape[1]):
        for rank in range(min(3, probs.shape[1])):
            rows = np.flatnonzero(order[:, rank] == c)
            if len(rows):
                break
        best = rows[np.argsort(-probs[rows, c], kind="stable")][:k]
        for r in best.tolist():
            chosen.setdefault(r, c)
    rows = np.array(sorted(chosen), dtype=np.int64)
    return rows, np.array([chosen[r] for r in rows.tolist()], dtype=np.int64)


def default_k(n: int, n_classes: int, k_min: int = 16, fraction: float = 0.2) -> int:
    """k = max(16, floor(0.2 N / C)) (NoLA ``find_k``)."""
    return max(int(k_min), int(fraction * n / n_classes))


def strong_view(pixels: torch.Tensor, gen: torch.Generator, augment: str = "photometric") -> torch.Tensor:
    """A strong augmentation of a preprocessed NCHW batch, drawn from ``gen``.

    Photometric (on the normalised pixels, so it needs no knowledge of the normalisation): per image
    brightness shift, contrast and saturation factors in [0.6, 1.4] (ColorJitter 0.4, p = 0.8), a
    Gaussian blur (p = 0.5, sigma 0.1-1.5 pixels) and Gaussian noise (sd 0.1). ``crop`` first takes a
    random resized crop (scale 0.5-1) and a horizontal flip, as NoLA's strong view does."""
    x = pixels.float().clone()
    n = x.shape[0]
    if augment == "crop":
        from cliplab.train.objectives.dino import multi_crop

        x = multi_crop(x, gen, n_global=1, n_local=0, global_scale=(0.5, 1.0))[0]
    u = torch.rand(n, 5, generator=gen)
    on = (u[:, 0] < 0.8).float()[:, None, None, None]
    shift = ((u[:, 1] - 0.5) * 0.8)[:, None, None, None]
    contrast = (0.6 + 0.8 * u[:, 2])[:, None, None, None]
    saturation = (0.6 + 0.8 * u[:, 3])[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    jittered = mean + contrast * (x - mean) + shift
    grey = jittered.mean(dim=1, keepdim=True)
    jittered = grey + saturation * (jittered - grey)
    x = on * jittered + (1 - on) * x
    sigma = 0.1 + 1.4 * torch.rand(1, generator=gen).item()
    if torch.rand(1, generator=gen).item() < 0.5:
        radius = max(1, int(round(2 * sigma)))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(t**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        c = x.shape[1]
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x + 0.1 * torch.randn(x.shape, generator=gen)


def norm_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """The affine parameters of every normalisation layer of the image tower, by name."""
    tower = model.tower_modules()["image"]
    found = []
    for name, module in tower.named_modules():
        if isinstance(module, NORM_TYPES):
            for pname, p in module.named_parameters(recurse=False):
                found.append((f"{name}.{pname}", p))
    if not found:
        raise InputError(f"{model.name}: its image tower has no normalisation layer to tune")
    return found


def position_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """The image tower's positional embeddings, by name (a ViT's input one, a ResNet's attention
    pool's; the token-level inputs a prompt token would sit beside)."""
    tower = model.tower_modules()["image"]
    return [(name, p) for name, p in tower.named_parameters() if any(key in name for key in POSITION_NAMES)]


def tuned_parameters(model, tune: str = "norms+positions") -> list[tuple[str, torch.nn.Parameter]]:
    """The image tower's parameters the student tunes: the norms' affine parameters and, with
    ``tune="norms+positions"``, its positional embeddings."""
    return norm_parameters(model) + (position_parameters(model) if tune == "norms+positions" else [])


@contextmanager
def tuned_applied(model, tune: str, values: Sequence[torch.Tensor] | None) -> Iterator[list[torch.nn.Parameter]]:
    """Inside, the image tower's :func:`tuned_parameters` hold ``values`` (None: their own, made
    trainable); restored on exit, and the model's other weights never change."""
    params = [p for _, p in tuned_parameters(model, tune)]
    saved = [p.detach().clone() for p in params]
    try:
        with frozen(model.torch_module):
            with torch.no_grad():
                if values is not None:
                    for p, v in zip(params, values):
                        p.copy_(v.to(p.device, p.dtype))
            for p in params:
                p.requires_grad_(True)
            yield params
    finally:
        with torch.no_grad():
            for p, v in zip(params, saved):
                p.copy_(v)


@dataclass
class _Images:
    pil: list  # the decoded images (another encoder preprocesses them its own way)
    pixels: torch.Tensor  # preprocessed NCHW for the model
    labels: list[str | None]  # labels a source named (for evaluation only)


class LabelFree(ValidatedParams, ClassifierMixin, BaseEstimator):
    """NoLA: adapt CLIP to ``classnames`` with unlabelled images only (see the module docstring).

    ``fit(images)`` takes a list of PIL images, paths or uint8 arrays, or a source ``cliplab.embed``
    reads (a folder, a manifest, shards); labels are never used to fit. ``fit(images, y_eval=labels)``
    only measures every stage (``stage_accuracy_``). ``predict``/``predict_proba`` take images.

    Parameters
    ----------
    model : cliplab Model
        The CLIP model (its image tower's norms are tuned inside ``fit`` and restored after).
    classnames : sequence of str
        The class names (the labels ``predict`` returns).
    templates : str, list or mapping, default="default"
        Prompt templates with ``{c}`` (see ``cliplab.zeroshot.resolve_templates``).
    descriptors : mapping, path or None, default=None
        ``{classname: [description, ...]}`` (NoLA's LLM descriptions); encoded as given, beside the
        templates. None: the templates alone.
    ssl_model : cliplab Model or None, default=None
        The self-supervised encoder whose frozen image features the labeller reads (any cliplab
        model's image tower, e.g. one trained with the ``dino`` objective). None: ``model``'s own.
    k : int or None, default=None
        Confident images per class; None: max(16, floor(k_fraction N / C)).
    k_fraction : float in (0, 1], default=0.2
        NoLA's share of the images per class that ``k`` is at least.
    labeller : {"linear", "mlp"}, default="linear"
        The labelling network: an L2-regularised linear softmax classifier (inverse strength
        ``labeller_c``), or NoLA's MLP (width ``labeller_hidden``, Adam ``labeller_lr``, batch 32,
        ``labeller_epochs``).
    labeller_c : float, default=1.0
        Inverse L2 strength of the linear labeller (scikit-learn's ``C``).
    labeller_epochs, labeller_lr, labeller_hidden : int, float, int, default=50, 1e-3, 256
        The MLP labeller's training and width.
    epochs : int, default=10
        Student epochs over every image.
    tune : {"norms+positions", "norms"}, default="norms+positions"
        The image-tower parameters the student tunes: the normalisation layers' affine parameters
        (NoLA's LayerNorms), plus its positional embeddings by default (see the module docstring).
    lr : float, default=4e-3
        AdamW learning rate of the student (tuned parameters and linear head), cosine to 0 (NoLA's 0.004).
    weight_decay : float, default=1e-4
        AdamW weight decay of the student.
    batch_size : int, default=64
        Images per student step.
    smoothing : float, default=0.1
        Label smoothing of the student's CE.
    targets : {"labeller", "combined"}, default="labeller"
        The student's pseudo-labels: the labeller's argmax (NoLA), or the argmax of the labeller's
        and the text classifier's probabilities averaged.
    augment : {"photometric", "crop"}, default="photometric"
        The strong view (see :func:`strong_view`).
    random_state : int, default=0
        Seed of the labeller, the batch order and the augmentations.

    Attributes
    ----------
    classes_ : ndarray of str
        The class names.
    name_weights_, text_weights_ : ndarray of shape (C, D)
        The name-only text classifier (the templates) and the description-based one.
    logit_scale_ : float
        The model's logit scale, used by the text classifier and the student.
    k_ : int
        Confident images per class.
    confident_rows_, confident_labels_ : ndarray
        The confident set and its pseudo-labels (indices into ``classes_``).
    labeller_ : LogisticRegression or torch.nn.Module
        The labelling network over the SSL encoder's features (see :meth:`labeller_proba`).
    pseudo_labels_ : ndarray of shape (N,)
        The student's targets.
    head_ : ndarray of shape (C, D)
        The trained linear head.
    tuned_values_ : list of torch.Tensor
        The tuned image-tower parameters (``tuned_parameters`` order).
    stage_accuracy_ : dict or None
        With ``y_eval``: accuracy on the fitted images of the name-only zero-shot, the descriptor
        ensemble, the confident set (and its size), the labeller, the pseudo-labels and the student.
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "classnames": "no_validation",
        "templates": [str, os.PathLike, Mapping, "array-like"],
        "descriptors": [None, Mapping, str, os.PathLike],
        "ssl_model": "no_validation",
        "k": [None, COUNT],
        "k_fraction": [Interval(Real, 0, 1, closed="right")],
        "labeller": [StrOptions(set(LABELLERS))],
        "labeller_c": [POSITIVE],
        "labeller_epochs": [COUNT],
        "labeller_lr": [POSITIVE],
        "labeller_hidden": [COUNT],
        "epochs": [COUNT],
        "tune": [StrOptions(set(TUNES))],
        "lr": [POSITIVE],
        "weight_decay": [NON_NEGATIVE],
        "batch_size": [COUNT],
        "smoothing": [Interval(Real, 0, 1, closed="left")],
        "targets": [StrOptions({"labeller", "combined"})],
        "augment": [StrOptions(set(AUGMENTS))],
        "random_state": [SEED],
    }

    def __init__(self, model, classnames: Sequence[str], templates: Any = "default", descriptors: Any = None, ssl_model: Any = None,
                 k: int | None = None, k_fraction: float = 0.2, labeller: str = "linear", labeller_c: float = 1.0, labeller_epochs: int = 50, labeller_lr: float = 1e-3, labeller_hidden: int = 256,
                 epochs: int = 10, tune: str = "norms+positions", lr: float = 4e-3, weight_decay: float = 1e-4, batch_size: int = 64, smoothing: float = 0.1,
                 targets: str = "labeller", augment: str = "photometric", random_state: int = 0):  # fmt: skip
        self.model = model
        self.classnames = classnames
        self.templates = templates
        self.descriptors = descriptors
        self.ssl_model = ssl_model
        self.k = k
        self.k_fraction = k_fraction
        self.labeller = labeller
        self.labeller_c = labeller_c
        self.labeller_epochs = labeller_epochs
        self.labeller_lr = labeller_lr
        self.labeller_hidden = labeller_hidden
        self.epochs = epochs
        self.tune = tune
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.smoothing = smoothing
        self.targets = targets
        self.augment = augment
        self.random_state = random_state

    # --- inputs ---------------------------------------------------------------------------------
    def _images(self, images: Any) -> _Images:
        if isinstance(images, (str, os.PathLike)):
            from cliplab.data.images import decode_image
            from cliplab.data.sources import open_source

            items = open_source(images).items
            if not items:
                raise InputError(f"{images}: no images found")
            decoded = [decode_image(item.read_bytes(), item.id) for item in items]
            return _Images(decoded, self.model.preprocess_batch(decoded), [item.label for item in items])
        if getattr(images, "ndim", None) == 2:
            raise InputError(f"LabelFree tunes the image tower, so it takes images, not embeddings (got shape {tuple(images.shape)}); "
                             "pass PIL images, paths, uint8 arrays or a folder")  # fmt: skip
        images = list(images)
        if not images:
            raise InputError("no images given")
        return _Images(images, self.model.preprocess_batch(images), [None] * len(images))

    def _embed(self, model, pixels: torch.Tensor) -> np.ndarray:
        return np.concatenate([model.encode_pixels(pixels[i : i + 256]) for i in range(0, len(pixels), 256)])

    def _text_weights(self, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(name-only weights, description-based weights), both (C, D)."""
        names = ensemble_text_weights(self.model, classes, self.templates)
        if self.descriptors is None:
            return names, names
        descs = load_descriptors(self.descriptors)
        templates = resolve_templates(self.templates)
        prompts = {}
        for c in classes:
            filled = templates[c] if isinstance(templates, Mapping) else [fill_template(t, c) for t in templates]
            prompts[c] = list(filled) + list(descs.get(c, []))
        missing = [c for c in classes if c not in descs]
        if len(missing) == len(classes):
            raise InputError(f"descriptors name none of the classes ({', '.join(classes[:3])}, ...); key them by class name")
        return names, ensemble_text_weights(self.model, classes, prompts)

    # --- stages ---------------------------------------------------------------------------------
    def _train_labeller(self, feats: np.ndarray, rows: np.ndarray, labels: np.ndarray, n_classes: int) -> Any:
        if self.labeller == "linear":
            return LogisticRegression(C=self.labeller_c, max_iter=2000).fit(feats[rows], labels)
        gen = torch.Generator().manual_seed(int(self.random_state))
        net = torch.nn.Sequential(torch.nn.Linear(feats.shape[1], self.labeller_hidden), torch.nn.ReLU(), torch.nn.Linear(self.labeller_hidden, n_classes))
        with torch.no_grad():  # seeded initialisation, independent of the global generator
            for layer in (net[0], net[2]):
                bound = 1 / np.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound)
                layer.bias.copy_((torch.rand(layer.bias.shape, generator=gen) * 2 - 1) * bound)
        X, y = torch.from_numpy(feats[rows]), torch.from_numpy(labels)
        opt = torch.optim.Adam(net.parameters(), lr=self.labeller_lr)
        for _ in range(self.labeller_epochs):
            for batch in torch.randperm(len(rows), generator=gen).split(32):
                loss = F.cross_entropy(net(X[batch]), y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return net.eval()

    def _student_logits(self, pixels: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.model.image_features(self.model.to_device(pixels)).float(), dim=-1)
        return self.logit_scale_ * f @ F.normalize(head, dim=-1).T

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, images: Any, y_eval: Any = None) -> "LabelFree":
        """Adapt on unlabelled ``images``; ``y_eval`` (class names, optional) is used only to report
        each stage's accuracy in ``stage_accuracy_``, never to fit."""
        self.classes_ = np.array(check_classnames(self.classnames))
        classes = self.classes_.tolist()
        data = self._images(images)
        pixels, n, n_classes = data.pixels, len(data.pixels), len(classes)
        if y_eval is None and all(label is not None and label in classes for label in data.labels):
            y_eval = data.labels  # a source labelled with the class names: measured, never fitted on
        truth = self._eval_index(y_eval, n)
        self.logit_scale_ = float(self.model.logit_scale)
        self.name_weights_, self.text_weights_ = self._text_weights(classes)
        X = self._embed(self.model, pixels)
        probs = softmax(self.logit_scale_ * X @ self.text_weights_.T, axis=1)
        self.k_ = int(self.k) if self.k is not None else default_k(n, n_classes, fraction=self.k_fraction)
        self.confident_rows_, self.confident_labels_ = confident_per_class(probs, self.k_)
        ssl = self.ssl_model if self.ssl_model is not None else self.model
        feats = self._embed(ssl, pixels if ssl is self.model else ssl.preprocess_batch(data.pil))
        self.labeller_ = self._train_labeller(feats, self.confident_rows_, self.confident_labels_, n_classes)
        labeller_probs = self.labeller_proba(feats)
        target_probs = labeller_probs if self.targets == "labeller" else (labeller_probs + probs) / 2
        self.pseudo_labels_ = target_probs.argmax(1).astype(np.int64)
        self._fit_student(pixels)
        self.stage_accuracy_ = None
        if truth is not None:
            student = self._class_scores_pixels(pixels).argmax(1)
            self.stage_accuracy_ = {
                "zero_shot": float((X @ self.name_weights_.T).argmax(1).__eq__(truth).mean()),
                "descriptor_ensemble": float((probs.argmax(1) == truth).mean()),
                "confident_set": float((self.confident_labels_ == truth[self.confident_rows_]).mean()),
                "confident_set_size": len(self.confident_rows_),
                "labeller": float((labeller_probs.argmax(1) == truth).mean()),
                "pseudo_labels": float((self.pseudo_labels_ == truth).mean()),
                "student": float((student == truth).mean()),
            }
        return self

    def labeller_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities of the labelling network on SSL-encoder ``features``; a class
        missing from the confident set gets probability 0 from the linear labeller."""
        check_is_fitted(self, "labeller_")
        features = np.asarray(features, dtype=np.float32)
        if isinstance(self.labeller_, LogisticRegression):
            out = np.zeros((len(features), len(self.classes_)), np.float64)
            out[:, self.labeller_.classes_] = self.labeller_.predict_proba(features)
            return out
        with torch.no_grad():
            return torch.softmax(self.labeller_(torch.from_numpy(features)), dim=1).numpy()

    def _eval_index(self, y_eval: Any, n: int) -> np.ndarray | None:
        if y_eval is None:
            return None
        y = np.asarray(y_eval, dtype=object).astype(str)
        if len(y) != n:
            raise InputError(f"y_eval has {len(y)} labels for {n} images")
        where = {c: i for i, c in enumerate(self.classes_.tolist())}
        unknown = sorted(set(y.tolist()) - set(where))
        if unknown:
            raise InputError(f"y_eval has labels that are not class names: {', '.join(unknown[:3])}")
        return np.array([where[v] for v in y.tolist()], dtype=np.int64)

    def _fit_student(self, pixels: torch.Tensor) -> None:
        gen = torch.Generator().manual_seed(int(self.random_state) + 1)
        head = torch.nn.Parameter(torch.from_numpy(self.text_weights_.copy()).to(self.model.device))
        targets = torch.from_numpy(self.pseudo_labels_)
        steps = self.epochs * max(1, -(-len(pixels) // self.batch_size))
        with tuned_applied(self.model, self.tune, None) as params:
            opt = torch.optim.AdamW([*params, head], lr=self.lr, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            for _ in range(self.epochs):
                for rows in torch.randperm(len(pixels), generator=gen).split(self.batch_size):
                    view = strong_view(pixels[rows], gen, self.augment)
                    logits = self._student_logits(view.to(self.model.input_dtype), head)
                    loss = F.cross_entropy(logits, targets[rows].to(logits.device), label_smoothing=self.smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
            self.tuned_values_ = [p.detach().cpu().clone() for p in params]
        self.head_ = head.detach().cpu().numpy().astype(np.float32)

    # --- prediction -----------------------------------------------------------------------------
    @contextmanager
    def tuned(self) -> Iterator[None]:
        """Inside, ``self.model``'s image tower runs with the tuned parameters (e.g. to embed a collection)."""
        check_is_fitted(self, "tuned_values_")
        with tuned_applied(self.model, self.tune, self.tuned_values_):
            yield

    def _class_scores_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        head = torch.from_numpy(self.head_).to(self.model.device)
        out = []
        with self.tuned(), torch.no_grad():
            for i in range(0, len(pixels), 256):
                out.append(self._student_logits(pixels[i : i + 256], head).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def class_scores(self, images: Any) -> np.ndarray:
        """(N, C) logits of the adapted model: ``logit_scale * cos(f, head)``."""
        check_is_fitted(self, "head_")
        return self._class_scores_pixels(self._images(images).pixels)

    def predict_proba(self, images: Any) -> np.ndarray:
        """Softmax of ``class_scores``; columns follow ``classes_``."""
        return softmax(self.class_scores(images), axis=1)

    def predict(self, images: Any) -> np.ndarray:
        """The class name of the highest score for each image."""
        return self.classes_[np.argmax(self.class_scores(images), axis=1)]
