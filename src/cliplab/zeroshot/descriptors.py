"""Classification by description (Menon & Vondrick, "Visual Classification via Description from
Large Language Models", ICLR'23): a class scores the mean cosine between the image and prompts
``"{classname}, which has {descriptor}"`` built from LLM-written descriptors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import StrOptions

from cliplab.errors import InputError
from cliplab.zeroshot._base import ClassScores, SharedModelClone, TextHead, normalise_rows

Descriptors = Mapping[str, list[str]] | str | Path
AGGREGATES = ("mean", "max", "sum")
_VERB_PREFIXES = ("has", "often", "typically", "may", "can")


def load_descriptors(source: Descriptors) -> dict[str, list[str]]:
    """Descriptors as ``{classname: [descriptor, ...]}`` from a dict or a JSON file of that shape."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"descriptor file not found: {path}")
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(source, Mapping) or not source:
        raise InputError("descriptors must be a non-empty dict classname -> list of descriptor strings")
    out: dict[str, list[str]] = {}
    for cls, descs in source.items():
        if not isinstance(descs, list) or not descs or not all(isinstance(d, str) for d in descs):
            raise InputError(f"class {cls!r} needs a non-empty list of descriptor strings")
        out[str(cls)] = list(descs)
    return out


def make_descriptor_sentence(descriptor: str, strict_articles: bool = False) -> str:
    """Turn a descriptor into a relative clause, following the paper's release code
    (``descriptor_strings.make_descriptor_sentence``), first matching rule wins:

    1. starts with an article -> ``"which is {d}"``. QUIRK (reproduced by default): the release
       checks a plain ``startswith('a')``, so *any* word starting with "a" matches ("antennae" ->
       "which is antennae"). ``strict_articles=True`` matches only the words "a" / "an".
    2. starts with has / often / typically / may / can -> ``"which {d}"`` (plain prefix test).
    3. starts with "used" -> ``"which is {d}"``.
    4. otherwise -> ``"which has {d}"``.
    """
    if strict_articles:
        words = descriptor.split(maxsplit=1)
        is_article = bool(words) and words[0] in ("a", "an")
    else:
        is_article = descriptor.startswith("a")
    if is_article:
        return f"which is {descriptor}"
    if descriptor.startswith(_VERB_PREFIXES):
        return f"which {descriptor}"
    if descriptor.startswith("used"):
        return f"which is {descriptor}"
    return f"which has {descriptor}"


def descriptor_prompt(classname: str, descriptor: str, after_text: str = "", strict_articles: bool = False) -> str:
    """``"{classname}, {sentence}{after_text}"`` (category name prepended, between_text ", ")."""
    return f"{classname}, {make_descriptor_sentence(descriptor, strict_articles)}{after_text}"


class DescriptorClassifier(SharedModelClone, TextHead, ClassScores, ClassifierMixin, BaseEstimator):
    """Scores class k as ``aggregate_{d in D_k} cos(x, t(d))`` (mean by default; "max", "sum"
    are the release's other options). Scores carry no logit scale, as in the paper.

    ``predict_proba`` is ``softmax(model.logit_scale * scores)``: the release only applies a plain
    softmax to the raw scores for its top-k metric; scaling by the model's temperature gives
    probabilities as peaked as ordinary zero-shot ones. The argmax is unchanged either way.

    Parameters
    ----------
    model : cliplab Model
        The CLIP model whose text tower encodes the prompts (and whose image embeddings ``X`` are).
    descriptors : mapping or path
        ``{classname: [descriptor, ...]}`` or a JSON file of that shape.
    aggregate : {"mean", "max", "sum"}, default="mean"
        How a class's descriptor cosines combine into its score.
    after_text : str, default=""
        Text appended to every prompt.
    strict_articles : bool, default=False
        Treat only the words "a" / "an" as articles when building the descriptor sentences.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        The class names (the descriptor mapping's keys).
    descriptor_texts_ : list of str
        The M descriptors, class by class.
    prompts_ : list of str
        Their full prompts.
    descriptor_class_ : ndarray of shape (M,)
        Index of the class each descriptor belongs to.
    descriptor_embeddings_ : ndarray of shape (M, D)
        float32, L2-normalised prompt embeddings.
    n_features_in_ : int
        D, the embedding width ``X`` must have.
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        "descriptors": [Mapping, str, os.PathLike],
        "aggregate": [StrOptions(set(AGGREGATES))],
        "after_text": [str],
        "strict_articles": ["boolean"],
    }

    def __init__(self, model, descriptors: Descriptors, aggregate: str = "mean",
                 after_text: str = "", strict_articles: bool = False):
        self.model = model
        self.descriptors = descriptors
        self.aggregate = aggregate
        self.after_text = after_text
        self.strict_articles = strict_articles

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any = None, y: Any = None) -> "DescriptorClassifier":
        """Encode every descriptor prompt (one batched call); ``X`` is only shape-checked."""
        descs = load_descriptors(self.descriptors)
        self.classes_ = np.array(list(descs))
        self.descriptor_texts_ = [d for ds in descs.values() for d in ds]
        self.prompts_ = [descriptor_prompt(c, d, self.after_text, self.strict_articles)
                         for c, ds in descs.items() for d in ds]
        self.descriptor_class_ = np.repeat(np.arange(len(descs)), [len(ds) for ds in descs.values()])
        self.descriptor_embeddings_ = normalise_rows(self.model.encode_texts(self.prompts_))
        self.n_features_in_ = self.descriptor_embeddings_.shape[1]
        self._check_fit_inputs(X, y)
        return self

    def _similarities(self, X: Any) -> np.ndarray:
        X = self._checked(X)
        return X @ self.descriptor_embeddings_.T  # (N, M) cosines, both sides unit-norm

    def class_scores(self, X: Any) -> np.ndarray:
        """(N, C) class scores: the aggregate cosine over each class's descriptors."""
        sims = self._similarities(X)
        starts = np.searchsorted(self.descriptor_class_, np.arange(len(self.classes_)))
        if self.aggregate == "max":
            return np.maximum.reduceat(sims, starts, axis=1)
        total = np.add.reduceat(sims, starts, axis=1)
        if self.aggregate == "sum":
            return total
        return total / np.bincount(self.descriptor_class_).astype(np.float32)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``softmax(model.logit_scale * class_scores(X))``; rows sum to 1."""
        return softmax(np.float32(self.model.logit_scale) * self.class_scores(X), axis=1)

    def explain(self, X: Any, top: int | None = 3) -> list[dict]:
        """Per image: ``{"label", "score", "descriptors": [{"descriptor", "similarity"}, ...]}``,
        the predicted class's descriptors ranked by similarity (their contribution to the score),
        highest first; ties keep the descriptor order. ``top=None`` lists them all."""
        sims = self._similarities(X)
        scores = self.class_scores(X)
        out = []
        for s_row, c_row in zip(sims, scores):
            k = int(np.argmax(c_row))
            idx = np.flatnonzero(self.descriptor_class_ == k)
            ranked = idx[np.argsort(-s_row[idx], kind="stable")][:top]
            out.append({
                "label": str(self.classes_[k]),
                "score": float(c_row[k]),
                "descriptors": [{"descriptor": self.descriptor_texts_[i], "similarity": float(s_row[i])} for i in ranked],
            })
        return out
