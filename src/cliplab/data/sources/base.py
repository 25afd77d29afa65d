"""What every source shares: ``ImageSource``, ``SourceError``, reading a whole file, class sorting."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

from cliplab.data.items import ImageItem, Skipped
from cliplab.errors import SourceError

__all__ = ["ImageSource", "SourceError", "read_file", "sorted_classes"]


@dataclass
class ImageSource:
    """A listed collection: its items, its class names (when labelled) and what was left out."""

    name: str
    items: list[ImageItem]
    classes: list[str] | None = None
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what listing did that a user should know
    templates: dict[str, list[str]] | None = None  # class -> prompts, when the source knows its own

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ImageItem]:
        return iter(self.items)


def read_file(path: str) -> bytes:
    """The whole file at ``path``; module-level so ``partial(read_file, path)`` pickles."""
    with open(path, "rb") as f:
        return f.read()


def sorted_classes(labels: set[str]) -> list[str] | None:
    """Class names sorted; numerically when every name is an integer ("2" before "10")."""
    if not labels:
        return None
    if all(re.fullmatch(r"-?\d+", x) for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)
