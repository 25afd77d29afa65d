"""Dataset sources: turn a folder, a manifest, webdataset shards or synthetic scenes into items.

Every source is listed eagerly into an ``ImageSource`` (ids, labels, captions, metadata) while the
image bytes stay where they are: ``ImageItem.read_bytes`` reads them on demand. ``read_bytes`` is
always a ``functools.partial`` of a module-level function, so items pickle to worker processes.

Layout: ``base`` (``ImageSource``, ``SourceError``, shared helpers), one module per source
(``folder``, ``manifests``, ``shards`` with brace ``patterns``, ``synthetic``) and ``dispatch``
(``open_source``).
"""

from __future__ import annotations

from cliplab.data.sources.base import ImageSource, SourceError
from cliplab.data.sources.dispatch import open_source
from cliplab.data.sources.folder import IMAGE_EXTENSIONS, image_folder
from cliplab.data.sources.manifests import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    MANIFEST_EXTENSIONS,
    manifest,
)
from cliplab.data.sources.patterns import expand_braces
from cliplab.data.sources.shards import WDS_IMAGE_EXTENSIONS, webdataset
from cliplab.data.sources.synthetic import synthetic_source

__all__ = [
    "CAPTION_COLUMNS",
    "IMAGE_COLUMNS",
    "IMAGE_EXTENSIONS",
    "LABEL_COLUMNS",
    "MANIFEST_EXTENSIONS",
    "WDS_IMAGE_EXTENSIONS",
    "ImageSource",
    "SourceError",
    "expand_braces",
    "image_folder",
    "manifest",
    "open_source",
    "synthetic_source",
    "webdataset",
]
