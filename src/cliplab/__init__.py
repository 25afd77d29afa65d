"""cliplab: one toolkit for the CLIP family of vision-language models.

    import cliplab
    model = cliplab.load_model()                      # the bundled cliplab:shapes-tiny
    feats = cliplab.embed(model, "photos/")           # cached, resumable, L2-normalised
    clf = cliplab.ZeroShotClassifier(model, ["cat", "dog"], templates="openai_imagenet")
    clf.predict(feats.X)

The public API, one rule: everything the README's examples use is importable as ``cliplab.X`` or
``cliplab.<subpackage>.X`` and listed in that package's ``__all__``; deeper module paths are
internal and may move. The main entry points are here (``load_model``, ``embed``, ``segment``,
``ZeroShotClassifier``, ``SearchIndex``, ``TrainConfig``); the rest is in the subpackages:
``cliplab.adapt`` (few-shot heads), ``cliplab.dense``, ``cliplab.search``, ``cliplab.train``
(``cliplab.train.train``), ``cliplab.zeroshot``, ``cliplab.features``, ``cliplab.models``, ``cliplab.data``.
"""

import importlib

from cliplab import metrics
from cliplab.dense import segment
from cliplab.errors import CliplabError
from cliplab.features import Features, embed
from cliplab.models import DEFAULT_MODEL, Model, load_model
from cliplab.zeroshot import (
    ContextualClassifier,
    DescriptorClassifier,
    ZeroShotClassifier,
)

__version__ = "0.1.0"

# Loaded on first use (PEP 562 module __getattr__): FAISS and the web service behind cliplab.search
# alone add 1.5 s, which every command would pay at start-up if this module imported them.
_LAZY_SUBPACKAGES = ("adapt", "data", "dense", "features", "models", "search", "train", "zeroshot")
_LAZY_NAMES = {"SearchIndex": "cliplab.search", "TrainConfig": "cliplab.train"}

__all__ = [
    "DEFAULT_MODEL",
    "CliplabError",
    "ContextualClassifier",
    "DescriptorClassifier",
    "Features",
    "Model",
    "SearchIndex",
    "TrainConfig",
    "ZeroShotClassifier",
    "adapt",
    "data",
    "dense",
    "embed",
    "features",
    "load_model",
    "metrics",
    "models",
    "search",
    "segment",
    "train",
    "zeroshot",
]


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"cliplab.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'cliplab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
