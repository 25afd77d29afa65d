"""Manifests: CSV, TSV or JSONL files with one row per (image, caption)."""

from __future__ import annotations

import csv
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from cliplab.data.items import ImageItem, Skipped
from cliplab.data.sources.base import (
    ImageSource,
    SourceError,
    read_file,
    sorted_classes,
)

MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv", ".jsonl"})
IMAGE_COLUMNS = ("image", "filepath", "path", "file", "filename")
CAPTION_COLUMNS = ("caption", "text", "title")
LABEL_COLUMNS = ("label", "class", "category")


def manifest(
    path: str | os.PathLike[str],
    image_col: str | None = None,
    caption_col: str | None = None,
    label_col: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> ImageSource:
    """Items from a CSV, TSV or JSONL manifest, one row per (image, caption).

    Columns are found by name when not given (image/filepath/path/file/filename,
    caption/text/title, label/class/category). Relative image paths resolve against the manifest's
    folder, or ``root``. Rows naming the same image merge into one item with several captions;
    every other column of its first row goes to ``meta``. Missing files land in ``skipped``.
    """
    mpath = Path(path)
    if not mpath.is_file():
        raise SourceError(f"manifest {str(path)!r} does not exist; check the path")
    try:
        rows, columns, skipped = _read_rows(mpath)
    except (UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"cannot read manifest {str(path)!r} ({e}); save it as UTF-8 CSV, TSV or JSONL") from None
    img = _pick_column(columns, image_col, IMAGE_COLUMNS, mpath, "image_col", required=True)
    cap = _pick_column(columns, caption_col, CAPTION_COLUMNS, mpath, "caption_col")
    lab = _pick_column(columns, label_col, LABEL_COLUMNS, mpath, "label_col")
    base = Path(root) if root is not None else mpath.parent
    by_path: dict[str, ImageItem] = {}
    missing: set[str] = set()
    for lineno, row in rows:
        value = row.get(img)
        where = f"{mpath}:{lineno}"
        if value is None or str(value).strip() == "":
            skipped.append(Skipped(where, f"no value in column {img!r}"))
            continue
        ref = str(value).strip()
        if "://" in ref:
            skipped.append(Skipped(ref, "URLs are not read; download the files and list local paths"))
            continue
        file = Path(ref) if Path(ref).is_absolute() else base / ref
        key = os.path.normpath(file)
        item = by_path.get(key)
        if key in missing:
            continue
        if item is None:
            if not os.path.isfile(key):
                missing.add(key)
                skipped.append(Skipped(key, "file not found"))
                continue
            label = row.get(lab) if lab else None
            meta = {k: v for k, v in row.items() if k not in (img, cap, lab)}
            item = ImageItem(id=key, read_bytes=partial(read_file, key), meta=meta)
            item.label = None if label is None or str(label).strip() == "" else str(label).strip()
            by_path[key] = item
        elif item.label is None and lab and row.get(lab) not in (None, ""):
            item.label = str(row[lab]).strip()
        if cap:
            item.captions.extend(_captions(row.get(cap)))
    items = list(by_path.values())
    classes = sorted_classes({it.label for it in items if it.label is not None}) if lab else None
    return ImageSource(name=mpath.stem, items=items, classes=classes, skipped=skipped)


def _read_rows(mpath: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str], list[Skipped]]:
    """(line number, row) pairs of a manifest, its column names, and unparseable JSONL lines."""
    rows: list[tuple[int, dict[str, Any]]] = []
    columns: list[str] = []
    skipped: list[Skipped] = []
    suffix = mpath.suffix.lower()
    with open(mpath, newline="", encoding="utf-8-sig") as f:
        if suffix == ".jsonl":
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    skipped.append(Skipped(f"{mpath}:{lineno}", "invalid JSON line"))
                    continue
                if isinstance(row, dict):
                    rows.append((lineno, row))
                    columns.extend(k for k in row if k not in columns)
                else:
                    skipped.append(Skipped(f"{mpath}:{lineno}", "JSON line is not an object"))
        else:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
                columns = list(reader.fieldnames)
            for row in reader:
                rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None}))
    return rows, columns, skipped


def _pick_column(
    columns: list[str], given: str | None, candidates: tuple[str, ...], mpath: Path, arg: str, required: bool = False
) -> str | None:
    """The column named ``given``, else the first of ``candidates`` present (case-insensitive)."""
    if given is not None:
        if given not in columns:
            raise SourceError(f"{arg}={given!r} is not a column of {str(mpath)!r}; columns: {', '.join(columns) or 'none'}")
        return given
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    if required:
        raise SourceError(
            f"no image column in {str(mpath)!r} (columns: {', '.join(columns) or 'none'}); "
            f"name one of {'/'.join(candidates)} or pass {arg}="
        )
    return None


def _captions(value: Any) -> list[str]:
    """A caption cell as a list: JSONL may hold a list of captions; empty cells give none."""
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]
