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
``cliplab.adapt`` (few-shot heads), ``cliplab.caption`` (``Captioner``), ``cliplab.dense``, ``cliplab.search``, ``cliplab.train``
(``cliplab.train.train``), ``cliplab.zeroshot``, ``cliplab.features``, ``cliplab.models``, ``cliplab.data``.
"""

from cliplab._lazy import lazy_exports

__version__ = "0.1.0"

# Everything loads on first use: torch, torchvision, FAISS and the web service behind these names take
# seconds to import, which `cliplab --help` and every command would otherwise pay at start-up.
_SUBPACKAGES = ("adapt", "caption", "data", "dense", "features", "metrics", "models", "search", "train", "zeroshot")
_NAMES = {
    "Captioner": "cliplab.caption",
    "CliplabError": "cliplab.errors",
    "ContextualClassifier": "cliplab.zeroshot",
    "DEFAULT_MODEL": "cliplab.models",
    "DescriptorClassifier": "cliplab.zeroshot",
    "Features": "cliplab.features",
    "Model": "cliplab.models",
    "SearchIndex": "cliplab.search",
    "TrainConfig": "cliplab.train",
    "ZeroShotClassifier": "cliplab.zeroshot",
    "embed": "cliplab.features",
    "load_model": "cliplab.models",
    "segment": "cliplab.dense",
}

__all__ = [
    "DEFAULT_MODEL",
    "Captioner",
    "CliplabError",
    "ContextualClassifier",
    "DescriptorClassifier",
    "Features",
    "Model",
    "SearchIndex",
    "TrainConfig",
    "ZeroShotClassifier",
    "adapt",
    "caption",
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


__getattr__, __dir__ = lazy_exports("cliplab", {**dict.fromkeys(_SUBPACKAGES, ""), **_NAMES}, globals())
