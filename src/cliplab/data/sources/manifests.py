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
from cliplab.errors import how_to_pass

MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv", ".jsonl"})
IMAGE_COLUMNS = ("image", "filepath", "path", "file", "filename")
CAPTION_COLUMNS = ("caption", "captions", "text", "title")
LABEL_COLUMNS = ("label", "class", "category")
LANG_COLUMNS = ("language", "lang")


ON_CONFLICT = ("error", "first")


def manifest(
    path: str | os.PathLike[str],
    image_col: str | None = None,
    caption_col: str | None = None,
    label_col: str | None = None,
    root: str | os.PathLike[str] | None = None,
    on_conflict: str = "error",
    lang_col: str | None = None,
    language: str | None = None,
) -> ImageSource:
    """Items from a CSV, TSV or JSONL manifest, one row per (image, caption).

    Columns are found by name when not given (image/filepath/path/file/filename,
    caption/captions/text/title, label/class/category). A caption cell may hold a list of captions
    (a JSON list, in JSONL or in a CSV cell). Relative image paths resolve against the manifest's
    folder, or ``root``. Rows naming the same image merge into one item with several captions
    (said in ``notes``); every other column of its first row goes to ``meta``. Rows that give one
    image two different labels raise ``SourceError`` naming the lines, unless
    ``on_conflict="first"`` (keep the first label, and say so in ``notes``). Missing files land in
    ``skipped``.

    ``lang_col`` (found by name when not given: language, lang) says each row's caption language;
    an item's ``meta["caption_languages"]`` then lists the language of each of its captions.
    ``language`` keeps only the captions in that language (it needs a language column).
    """
    if on_conflict not in ON_CONFLICT:
        raise SourceError(f"on_conflict={on_conflict!r} is not understood; use {' or '.join(map(repr, ON_CONFLICT))}")
    mpath = Path(path)
    if not mpath.is_file():
        raise SourceError(f"manifest {str(path)!r} does not exist; check the path")
    try:
        rows, columns, skipped = _read_rows(mpath)
    except (UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"cannot read manifest {str(path)!r} ({e}); save it as UTF-8 CSV, TSV or JSONL") from e
    img = _pick_column(columns, image_col, IMAGE_COLUMNS, mpath, "image_col", required=True)
    cap = _pick_column(columns, caption_col, CAPTION_COLUMNS, mpath, "caption_col")
    lab = _pick_column(columns, label_col, LABEL_COLUMNS, mpath, "label_col")
    lng = _pick_column(columns, lang_col, LANG_COLUMNS, mpath, "lang_col")
    if language is not None and lng is None:
        raise SourceError(f"{how_to_pass('language', language)} needs a language column in {str(mpath)!r}; name it with {how_to_pass('lang_col', 'NAME')}")
    base = Path(root) if root is not None else mpath.parent
    by_path: dict[str, ImageItem] = {}
    label_line: dict[str, int] = {}  # image -> line its label came from
    rows_of: dict[str, int] = {}  # image -> rows naming it
    conflicts: list[str] = []
    missing: set[str] = set()
    for lineno, row in rows:
        value = row.get(img)
        where = f"{mpath}:{lineno}"
        if value is None or str(value).strip() == "":
            skipped.append(Skipped(where, f"no value in column {img!r}", "row"))
            continue
        ref = str(value).strip()
        if "://" in ref:
            skipped.append(Skipped(where, "URLs are not read; download the files and list local paths", "row"))
            continue
        file = Path(ref) if Path(ref).is_absolute() else base / ref
        key = os.path.normpath(file)
        if key in missing:
            continue
        if not os.path.isfile(key):
            missing.add(key)
            skipped.append(Skipped(key, "file not found"))
            continue
        label = _cell(row.get(lab)) if lab else None
        item = by_path.get(key)
        if item is None:
            meta = {k: v for k, v in row.items() if k not in (img, cap, lab, lng)}
            item = by_path[key] = ImageItem(id=key, read_bytes=partial(read_file, key), meta=meta)
        rows_of[key] = rows_of.get(key, 0) + 1
        if label is not None:
            if item.label is None:
                item.label, label_line[key] = label, lineno
            elif item.label != label:
                conflicts.append(f"{ref!r} is {item.label!r} on line {label_line[key]} but {label!r} on line {lineno}")
        if cap:
            texts = _captions(row.get(cap))
            if lng:
                code = _cell(row.get(lng)) or ""
                if language is not None and code != language:
                    texts = []
                item.meta.setdefault("caption_languages", []).extend([code] * len(texts))
            item.captions.extend(texts)
    items = list(by_path.values())
    notes = _merge_notes(rows_of)
    if conflicts:
        if on_conflict == "error":
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise SourceError(
                f"{mpath}: conflicting labels for one image: {conflicts[0]}{more}; fix the manifest or "
                f"keep the first label with {how_to_pass('on_conflict', 'first')}"
            )
        notes.append(f"{len(conflicts)} image(s) had conflicting labels; kept the first ({conflicts[0]})")
    classes = sorted_classes({it.label for it in items if it.label is not None}) if lab else None
    return ImageSource(name=mpath.stem, items=items, classes=classes, skipped=skipped, notes=notes)


def _merge_notes(rows_of: dict[str, int]) -> list[str]:
    """'3 rows -> 2 images, 1 image with several captions' when rows named an image twice."""
    n_rows, n_images = sum(rows_of.values()), len(rows_of)
    if n_rows == n_images:
        return []
    several = sum(1 for n in rows_of.values() if n > 1)
    return [f"{n_rows} rows -> {n_images} images, {several} image{'s' if several != 1 else ''} named by several rows (captions merged)"]


def _cell(value: Any) -> str | None:
    """A label cell as text; empty cells give None."""
    return None if value is None or str(value).strip() == "" else str(value).strip()


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
                    skipped.append(Skipped(f"{mpath}:{lineno}", "invalid JSON line", "row"))
                    continue
                if isinstance(row, dict):
                    rows.append((lineno, row))
                    columns.extend(k for k in row if k not in columns)
                else:
                    skipped.append(Skipped(f"{mpath}:{lineno}", "JSON line is not an object", "row"))
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
            raise SourceError(f"{how_to_pass(arg, given)} is not a column of {str(mpath)!r}; columns: {', '.join(columns) or 'none'}")
        return given
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    if required:
        raise SourceError(
            f"no image column in {str(mpath)!r} (columns: {', '.join(columns) or 'none'}); "
            f"name one of {'/'.join(candidates)} or pass {how_to_pass(arg, 'NAME')}"
        )
    return None


def _captions(value: Any) -> list[str]:
    """A caption cell as a list: a JSON list (in JSONL, or as the text of a CSV cell) gives several; empty cells none."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            value = parsed
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]
