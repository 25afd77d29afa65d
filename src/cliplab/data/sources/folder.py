"""Image folders: every image under a root, labelled by first-level subfolder when laid out so."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from cliplab.data.items import ImageItem
from cliplab.data.sources.base import (
    ImageSource,
    SourceError,
    read_file,
    sorted_classes,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def image_folder(root: str | os.PathLike[str], labels: str | None = "auto") -> ImageSource:
    """Every image under ``root`` (recursive, hidden files and folders skipped), sorted by path.

    ``labels="auto"`` names each image after its first-level subfolder when every image sits in
    one; ``"folder"`` requires that layout; ``None`` gives no labels.
    """
    base = Path(root)
    if not base.is_dir():
        raise SourceError(f"image folder {str(root)!r} does not exist or is not a folder")
    if labels not in ("auto", "folder", None):
        raise SourceError(f"labels={labels!r} is not understood; use 'auto', 'folder' or None")
    rels: list[tuple[str, ...]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(base).parts
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                rels.append((*rel_dir, name))
    if not rels:
        exts = " ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise SourceError(f"no images found under {str(root)!r}; expected files ending in {exts}")
    rels.sort()
    in_subfolders = all(len(r) >= 2 for r in rels)
    if labels == "folder" and not in_subfolders:
        loose = next(r for r in rels if len(r) == 1)
        raise SourceError(f"{str(root)!r} has images outside class subfolders (e.g. {loose[0]!r}); move them or pass labels=None")
    use_labels = labels is not None and in_subfolders
    items = []
    for rel in rels:
        path = str(base.joinpath(*rel))
        items.append(ImageItem(id=path, read_bytes=partial(read_file, path), label=rel[0] if use_labels else None))
    classes = sorted_classes({it.label for it in items if it.label is not None}) if use_labels else None
    return ImageSource(name=base.resolve().name or str(base), items=items, classes=classes)
