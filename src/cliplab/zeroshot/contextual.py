"""PerceptionCLIP two-step zero-shot inference (An et al., "More Context, Less Distraction",
ICLR'24): first infer contextual attributes z (background, orientation, ...) from the image, then
classify conditioned on them, marginalising: ``P(y|x) = sum_z P(z|x) P(y|x,z)``."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import StrOptions

from cliplab.errors import InputError
from cliplab.validation import POSITIVE, check_classnames
from cliplab.zeroshot._base import ClassScores, SharedModelClone, TextHead, normalise_rows
from cliplab.zeroshot.templates import fill_template

Attributes = Mapping[str, Mapping[str, str | Sequence[str]]]
INFER_MODES = ("with_y", "without_y")


def compose_contexts(attributes: Attributes) -> tuple[list[dict[str, str]], list[list[str]]]:
    """Cartesian product of the factors' values -> (context labels, descriptions per context).

    A context's descriptions are the product of its values' description lists, each joined with
    ", "; empty descriptions (e.g. background "others": "") are left out of the join.
    No factors gives a single context with the empty description.
    """
    factors = list(attributes)
    values: list[list[tuple[str, list[str]]]] = []
    for f in factors:
        vals = attributes[f]
        if not isinstance(vals, Mapping) or not vals:
            raise InputError(f"attribute {f!r} needs a non-empty dict value -> description(s)")
        row = []
        for v, descs in vals.items():
            descs = [descs] if isinstance(descs, str) else list(descs)
            if not descs:
                raise InputError(f"attribute {f!r} value {v!r} has no description")
            row.append((str(v), descs))
        values.append(row)
    labels, descriptions = [], []
    for combo in itertools.product(*values):
        labels.append({f: v for f, (v, _) in zip(factors, combo)})
        descriptions.append([", ".join(p for p in parts if p) for parts in itertools.product(*(d for _, d in combo))])
    return labels, descriptions


def context_text(main: str, description: str) -> str:
    """``main + ", " + description + "."``, or ``main + "."`` when the description is empty."""
    return f"{main}, {description}." if description else f"{main}."


class ContextualClassifier(SharedModelClone, TextHead, ClassScores, ClassifierMixin, BaseEstimator):
    """Two-step PerceptionCLIP classifier over L2-normalised image embeddings.

    f(y, z; x) = logit_scale * cos(x, t(y, z)), t(y, z) the renormalised mean of the normalised
    embeddings of ``template(y) + ", " + description + "."`` over z's descriptions.

    Step 1, ``infer_mode="with_y"``: P(z|x) = sum_y exp(f(y,z;x)/T) / sum_{z'} sum_y exp(f(y,z';x)/T);
    ``"without_y"``: P(z|x) = softmax_z f(z;x)/T with the class name replaced by ``convert_text``.
    Step 2: P(y|x,z) = softmax_y f(y,z;x) (temperature 1); P(y|x) = sum_z P(z|x) P(y|x,z).

    Parameters
    ----------
    model : cliplab Model
        The CLIP model whose text tower encodes the prompts (and whose image embeddings ``X`` are).
    classnames : sequence of str
        The distinct class names; they are the labels.
    attributes : mapping
        ``{factor: {value: description or [descriptions]}}``, the contextual attributes z.
    template : str, default="a photo of a {c}"
        The class part of every prompt.
    temperature : float > 0, default=1.0
        Temperature T of step 1.
    infer_mode : {"with_y", "without_y"}, default="with_y"
        How P(z|x) is inferred (see above).
    convert_text : str, default="object"
        The word replacing the class name for ``infer_mode="without_y"``.

    Attributes
    ----------
    classes_ : ndarray of shape (Y,)
        The class names.
    contexts_ : list of dict
        The Z contexts, each a dict factor -> value.
    text_weights_ : ndarray of shape (Y, Z, D)
        float32, the L2-normalised embedding of each (class, context) text.
    context_weights_ : ndarray of shape (Z, D) or None
        For ``infer_mode="without_y"``, else None.
    n_features_in_ : int
        D, the embedding width ``X`` must have.
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "classnames": "no_validation",  # check_classnames says what to pass instead
        "attributes": [Mapping],
        "template": [str],
        "temperature": [POSITIVE],
        "infer_mode": [StrOptions(set(INFER_MODES))],
        "convert_text": [str],
    }

    def __init__(self, model, classnames: Sequence[str], attributes: Attributes,
                 template: str = "a photo of a {c}", temperature: float = 1.0,
                 infer_mode: str = "with_y", convert_text: str = "object"):
        self.model = model
        self.classnames = classnames
        self.attributes = attributes
        self.template = template
        self.temperature = temperature
        self.infer_mode = infer_mode
        self.convert_text = convert_text

    def _texts(self, names: list[str], descriptions: list[list[str]]) -> tuple[list[str], list[int]]:
        texts, counts = [], []
        for name in names:
            main = fill_template(self.template, name)
            for descs in descriptions:
                texts += [context_text(main, d) for d in descs]
                counts.append(len(descs))
        return texts, counts

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any = None, y: Any = None) -> "ContextualClassifier":
        """Encode the (y, z) texts (and the z-only texts for "without_y") in one batched call."""
        self.classes_ = np.array(check_classnames(self.classnames))
        self.contexts_, descriptions = compose_contexts(self.attributes)
        names = self.classes_.tolist() + ([self.convert_text] if self.infer_mode == "without_y" else [])
        texts, counts = self._texts(names, descriptions)
        emb = normalise_rows(self.model.encode_texts(texts))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        means = np.add.reduceat(emb, starts, axis=0) / np.asarray(counts, np.float32)[:, None]
        weights = normalise_rows(means).reshape(len(names), len(self.contexts_), -1)
        self.text_weights_ = weights[: len(self.classes_)]  # (Y, Z, D)
        self.context_weights_ = weights[-1] if self.infer_mode == "without_y" else None  # (Z, D)
        self.n_features_in_ = weights.shape[-1]
        self._check_fit_inputs(X, y)
        return self

    def _logits(self, X: Any) -> np.ndarray:
        X = self._checked(X)
        return np.float32(self.model.logit_scale) * np.einsum("nd,yzd->nyz", X, self.text_weights_)

    def _context_proba(self, X: Any, logits: np.ndarray) -> np.ndarray:
        T = float(self.temperature)
        if self.infer_mode == "with_y":
            # PerceptionCLIP eq. for "w/ y": marginal over y of the joint softmax over (y, z).
            return softmax(logsumexp(logits / T, axis=1), axis=1)
        f_z = np.float32(self.model.logit_scale) * (self._checked(X) @ self.context_weights_.T)
        return softmax(f_z / T, axis=1)

    def context_proba(self, X: Any) -> np.ndarray:
        """(N, Z) P(z|x); column j is the context ``contexts_[j]`` (a dict factor -> value)."""
        return self._context_proba(X, self._logits(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, Y) P(y|x) = sum_z P(z|x) P(y|x,z)."""
        logits = self._logits(X)
        p_z = self._context_proba(X, logits)
        p_y_given_z = softmax(logits, axis=1)  # softmax over y, per z
        return np.einsum("nz,nyz->ny", p_z, p_y_given_z)

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, Y) log P(y|x)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))
