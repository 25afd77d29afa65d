"""Dataset sources: turn a folder, a manifest, webdataset shards or synthetic scenes into items.

Every source is listed eagerly into an ``ImageSource`` (ids, labels, captions, metadata) while the
image bytes stay where they are: ``ImageItem.read_bytes`` reads them on demand. ``read_bytes`` is
always a ``functools.partial`` of a module-level function, so items pickle to worker processes.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Sequence

from cliplab.data.items import ImageItem, Skipped

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv", ".jsonl"})
IMAGE_COLUMNS = ("image", "filepath", "path", "file", "filename")
CAPTION_COLUMNS = ("caption", "text", "title")
LABEL_COLUMNS = ("label", "class", "category")
WDS_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_ACCEPTED = (
    "a folder of images, a .csv/.tsv/.jsonl manifest, .tar shards (e.g. 'shards/{000..009}.tar') "
    "or 'synthetic:<n>[:seed]'"
)


class SourceError(ValueError):
    """A dataset spec that cannot be listed; the message is one line naming the input and the fix."""


@dataclass
class ImageSource:
    """A listed collection: its items, its class names (when labelled) and what was left out."""

    name: str
    items: list[ImageItem]
    classes: list[str] | None = None
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ImageItem]:
        return iter(self.items)


# --- dispatch -----------------------------------------------------------------------------------
def open_source(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], **kw: Any) -> ImageSource:
    """Open ``spec`` by its form: folder, manifest file, tar shard(s)/brace pattern, or "synthetic:<n>[:seed]".

    Keyword arguments go to the matching function (``image_folder``, ``manifest``, ``webdataset``,
    ``synthetic_source``).
    """
    if isinstance(spec, (list, tuple)):
        return webdataset([str(s) for s in spec], **kw)
    text = os.fspath(spec)  # type: ignore[arg-type]
    head, _, rest = text.partition(":")
    if head in ("synthetic", "synth") and rest:
        n, seed = _parse_synthetic(text, rest)
        return synthetic_source(n, seed=seed, **kw)
    path = Path(text)
    if path.is_dir():
        return image_folder(path, **kw)
    if path.suffix.lower() in MANIFEST_EXTENSIONS:
        return manifest(path, **kw)
    if text.lower().endswith(".tar") or ("{" in text and ".tar" in text.lower()):
        return webdataset(text, **kw)
    missing = "" if path.exists() else " (no such file or folder)"
    raise SourceError(f"cannot open {text!r} as a dataset{missing}; pass {_ACCEPTED}")


def _parse_synthetic(text: str, rest: str) -> tuple[int, int]:
    parts = rest.split(":")
    try:
        if len(parts) > 2:
            raise ValueError
        n = int(parts[0])
        seed = int(parts[1]) if len(parts) == 2 else 0
        if n < 0:
            raise ValueError
    except ValueError:
        raise SourceError(f"cannot read {text!r}; write 'synthetic:<n>' or 'synthetic:<n>:<seed>' with integers") from None
    return n, seed


# --- shared helpers -----------------------------------------------------------------------------
def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_range(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _constant(data: bytes) -> bytes:
    return data


def _sorted_classes(labels: set[str]) -> list[str] | None:
    """Class names sorted; numerically when every name is an integer ("2" before "10")."""
    if not labels:
        return None
    if all(re.fullmatch(r"-?\d+", x) for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)


# --- image folders ------------------------------------------------------------------------------
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
        items.append(ImageItem(id=path, read_bytes=partial(_read_file, path), label=rel[0] if use_labels else None))
    classes = _sorted_classes({it.label for it in items if it.label is not None}) if use_labels else None
    return ImageSource(name=base.resolve().name or str(base), items=items, classes=classes)


# --- manifests ----------------------------------------------------------------------------------
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
            item = ImageItem(id=key, read_bytes=partial(_read_file, key), meta=meta)
            item.label = None if label is None or str(label).strip() == "" else str(label).strip()
            by_path[key] = item
        elif item.label is None and lab and row.get(lab) not in (None, ""):
            item.label = str(row[lab]).strip()
        if cap:
            item.captions.extend(_captions(row.get(cap)))
    items = list(by_path.values())
    classes = _sorted_classes({it.label for it in items if it.label is not None}) if lab else None
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


# --- webdataset shards --------------------------------------------------------------------------
def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style braces: ``{000..009}`` (zero-padded ranges, optional ``..step``) and ``{a,b}``."""
    found = _find_group(pattern)
    if found is None:
        return [pattern]
    start, end, alternatives = found
    out: list[str] = []
    for alt in alternatives:
        out.extend(expand_braces(pattern[:start] + alt + pattern[end + 1 :]))
    return out


def _find_group(s: str) -> tuple[int, int, list[str]] | None:
    """First brace group of ``s`` that expands: (index of '{', index of '}', alternatives)."""
    i = s.find("{")
    while i != -1:
        depth, commas = 0, []
        for j in range(i, len(s)):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            elif s[j] == "," and depth == 1:
                commas.append(j)
        else:
            return None  # unbalanced: nothing more expands
        body = s[i + 1 : j]
        rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?", body)
        if rng:
            return i, j, _range(*rng.groups())
        if commas:
            cuts = [i, *commas, j]
            return i, j, [s[a + 1 : b] for a, b in zip(cuts, cuts[1:])]
        i = s.find("{", i + 1)  # a literal "{x}": look further on
    return None


def _range(a: str, b: str, step: str | None) -> list[str]:
    lo, hi = int(a), int(b)
    inc = abs(int(step)) if step and int(step) != 0 else 1
    values = range(lo, hi + 1, inc) if lo <= hi else range(lo, hi - 1, -inc)
    padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (a, b))
    width = max(len(a), len(b)) if padded else 0
    return [str(v).zfill(width) for v in values]


def webdataset(pattern: str | Sequence[str]) -> ImageSource:
    """Samples of webdataset ``.tar`` shards given as a path, a brace/glob pattern or a list of them.

    Members group by key (the name up to the first dot of the basename). The image is the
    jpg/jpeg/png/webp member, the caption the ``txt`` member, the label ``cls`` or ``json["label"]``;
    the ``json`` content becomes ``meta``. Ids are ``"<shard>#<key>"``. Bytes are read on demand by
    offset. Corrupt or missing shards, and samples without an image, land in ``skipped``.
    """
    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    shards: list[str] = []
    for pat in patterns:
        for piece in expand_braces(os.fspath(pat)):
            shards.extend(sorted(glob.glob(piece)) if glob.has_magic(piece) else [piece])
    existing = [s for s in shards if os.path.isfile(s)]
    shown = ", ".join(repr(os.fspath(p)) for p in patterns)
    if not existing:
        raise SourceError(f"no shard file matches {shown}; check the path and the {{000..009}} range")
    items: list[ImageItem] = []
    skipped = [Skipped(s, "shard not found") for s in shards if not os.path.isfile(s)]
    for shard in existing:
        _list_shard(shard, items, skipped)
    labels = {it.label for it in items if it.label is not None}
    name = Path(os.fspath(patterns[0])).stem if len(patterns) == 1 else "webdataset"
    return ImageSource(name=name, items=items, classes=_sorted_classes(labels), skipped=skipped)


def _list_shard(shard: str, items: list[ImageItem], skipped: list[Skipped]) -> None:
    """Append the samples of one shard to ``items``; problems go to ``skipped``.

    A shard damaged part-way keeps the samples listed before the damage.
    """
    size = os.path.getsize(shard)
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    with open(shard, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            skipped.append(Skipped(shard, "compressed shard; decompress it to a plain .tar"))
            return
        f.seek(0)
        try:
            tf = tarfile.open(fileobj=f, mode="r:")
        except (tarfile.TarError, EOFError, OSError) as e:
            skipped.append(Skipped(shard, f"corrupt shard, not a tar file ({e})"))
            return
        with tf:
            problem = None
            try:
                for member in tf:
                    if member.isfile():
                        _add_member(samples, member)
                if not _rest_is_zero(f, tf.offset):
                    problem = f"unreadable tar header at byte {tf.offset}"
            except (tarfile.TarError, EOFError, OSError) as e:
                problem = str(e) or type(e).__name__
            if problem:
                skipped.append(Skipped(shard, f"corrupt shard ({problem}); samples after it are lost"))
            texts = {key: _read_texts(tf, group, size) for key, group in samples.items()}
    for key, group in samples.items():
        sid = f"{shard}#{key}"
        image = next((group[e] for e in WDS_IMAGE_EXTENSIONS if e in group), None)
        if image is None:
            skipped.append(Skipped(sid, "no image member (jpg/jpeg/png/webp)"))
            continue
        if image.offset_data + image.size > size:
            skipped.append(Skipped(sid, "truncated member"))
            continue
        item = ImageItem(id=sid, read_bytes=partial(_read_range, shard, image.offset_data, image.size))
        _apply_texts(item, texts[key], skipped)
        items.append(item)


def _add_member(samples: dict[str, dict[str, tarfile.TarInfo]], member: tarfile.TarInfo) -> None:
    folder, _, base = member.name.rpartition("/")
    if base.startswith(".") or "." not in base:
        return
    stem, ext = base.split(".", 1)
    key = f"{folder}/{stem}" if folder else stem
    samples.setdefault(key, {})[ext.lower()] = member


def _read_texts(tf: tarfile.TarFile, group: dict[str, tarfile.TarInfo], size: int) -> dict[str, str]:
    """The txt/cls/json members of one sample, decoded; truncated or unreadable ones left out."""
    texts = {}
    for ext in ("txt", "cls", "json"):
        member = group.get(ext)
        if member is None or member.offset_data + member.size > size:
            continue
        try:
            f = tf.extractfile(member)
            if f is not None:
                texts[ext] = f.read().decode("utf-8", errors="replace")
        except (tarfile.TarError, OSError):
            continue
    return texts


def _apply_texts(item: ImageItem, texts: dict[str, str], skipped: list[Skipped]) -> None:
    """Fill caption, label and meta of a sample from its txt/cls/json members."""
    if texts.get("txt", "").strip():
        item.captions.append(texts["txt"].strip())
    if texts.get("json"):
        try:
            meta = json.loads(texts["json"])
        except json.JSONDecodeError:
            skipped.append(Skipped(item.id + ".json", "invalid JSON (kept the image, no metadata)"))
        else:
            item.meta = meta if isinstance(meta, dict) else {"json": meta}
            if "label" in item.meta and item.meta["label"] is not None:
                item.label = str(item.meta["label"]).strip()
    if texts.get("cls", "").strip():
        item.label = texts["cls"].strip()


def _rest_is_zero(f: io.BufferedReader, offset: int) -> bool:
    """True when the file holds only zero padding from ``offset`` on (a clean end of archive)."""
    f.seek(offset)
    while chunk := f.read(1 << 20):
        if chunk.strip(b"\0"):
            return False
    return True


# --- synthetic scenes ---------------------------------------------------------------------------
def synthetic_source(n: int, seed: int = 0, split: str = "test", attribute: str | None = None, **kw: Any) -> ImageSource:
    """``n`` seeded synthetic scenes as PNG-encoded items (``kw``: image_size, max_objects, ...).

    Captions hold the full caption; with ``attribute`` (shape, color, size, position) the label
    is that attribute of the first object and ``classes`` its whole vocabulary.
    """
    from cliplab.data import synthetic

    vocab = {
        "shape": list(synthetic.SHAPES),
        "color": list(synthetic.COLOR_NAMES),
        "size": list(synthetic.SIZES),
        "position": list(synthetic.POSITIONS),
    }
    if attribute is not None and attribute not in vocab:
        raise SourceError(f"attribute={attribute!r} is not a scene attribute; use one of {', '.join(vocab)}")
    items = []
    for i, rec in enumerate(synthetic.iter_scenes(n, seed=seed, split=split, **kw)):
        buf = io.BytesIO()
        rec.image.save(buf, "PNG")
        label = str(rec.objects[0][attribute]) if attribute and rec.objects else None
        meta = {"objects": rec.objects, "background": rec.background, "short_caption": rec.short_caption}
        items.append(
            ImageItem(
                id=f"synthetic-{split}-{seed}-{i:06d}",
                read_bytes=partial(_constant, buf.getvalue()),
                label=label,
                captions=[rec.caption],
                meta=meta,
            )
        )
    classes = vocab[attribute] if attribute else None
    return ImageSource(name=f"synthetic-{split}-{seed}", items=items, classes=classes)
