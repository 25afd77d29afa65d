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
from cliplab.errors import how_to_pass, warn

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def image_folder(root: str | os.PathLike[str], labels: str | None = "auto") -> ImageSource:
    """Every image under ``root`` (recursive, hidden files and folders skipped), sorted by path.

    ``labels="auto"`` names each image after its first-level subfolder when there are subfolders;
    images beside them stay unlabelled, with a warning naming them. ``"folder"`` requires every
    image to sit in a subfolder; ``None`` gives no labels.
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
    loose = [r[0] for r in rels if len(r) == 1]
    if labels == "folder" and loose:
        raise SourceError(
            f"{str(root)!r} has images outside class subfolders (e.g. {loose[0]!r}); move them or pass {how_to_pass('labels', 'None')}"
        )
    # Labels come from subfolders whenever there are any; images beside them are kept unlabelled.
    use_labels = labels is not None and len(loose) < len(rels)
    if use_labels and loose:  # a warning only: the CLI prints each warning once, as a line of its own
        shown = ", ".join(repr(name) for name in loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        warn(f"{root}: {len(loose)} image(s) outside the class subfolders have no label and are left out of labelled tasks: {shown}")
    items = []
    for rel in rels:
        path = str(base.joinpath(*rel))
        label = rel[0] if use_labels and len(rel) >= 2 else None
        items.append(ImageItem(id=path, read_bytes=partial(read_file, path), label=label))
    classes = sorted_classes({it.label for it in items if it.label is not None}) if use_labels else None
    return ImageSource(name=base.resolve().name or str(base), items=items, classes=classes)
