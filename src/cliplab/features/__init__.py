"""Batched image embedding and the content-addressed feature store.

``embed(model, source, cache_dir=...)`` -> ``Features`` (float32 L2-normalised rows with ids,
labels, captions, metadata and the list of skipped images).
"""

from cliplab.features.cache import CacheWarning, ChunkCache
from cliplab.features.features import Features, FeaturesFileError
from cliplab.features.pipeline import EmbedOptions, default_num_workers, embed

__all__ = ["CacheWarning", "ChunkCache", "EmbedOptions", "Features", "FeaturesFileError", "default_num_workers", "embed"]
