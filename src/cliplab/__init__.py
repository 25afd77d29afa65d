"""cliplab: one toolkit for the CLIP family of vision-language models.

    import cliplab
    model = cliplab.load_model()                      # the bundled cliplab:shapes-tiny
    feats = cliplab.embed(model, "photos/")           # cached, resumable, L2-normalised
    clf = cliplab.ZeroShotClassifier(model, ["cat", "dog"], templates="openai_imagenet")
    clf.predict(feats.X)
"""

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

__all__ = [
    "DEFAULT_MODEL",
    "CliplabError",
    "ContextualClassifier",
    "DescriptorClassifier",
    "Features",
    "Model",
    "ZeroShotClassifier",
    "embed",
    "load_model",
    "metrics",
    "segment",
]
