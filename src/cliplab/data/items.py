"""The unit every dataset source yields: one image with what is known about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ImageItem:
    """One image of a collection.

    ``id`` is unique within its source (a path, or a shard/key pair); ``read_bytes`` returns the
    encoded file content (it is what the feature store hashes and what workers decode).
    """

    id: str
    read_bytes: Callable[[], bytes]
    label: str | None = None
    captions: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


SKIP_KINDS = ("row", "shard", "image", "note")


@dataclass
class Skipped:
    """An input that was left out, and why (one short reason).

    ``kind`` says what was left out, so counts never mix units: a manifest ``row``, a whole
    ``shard``, an ``image`` (file or shard sample), or a ``note`` (kept, but something of it was
    dropped, e.g. a sample's unreadable metadata).
    """

    id: str
    reason: str
    kind: str = "image"
