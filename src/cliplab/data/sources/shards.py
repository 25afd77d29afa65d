"""Webdataset shards: samples of plain ``.tar`` files, grouped by key and read by offset."""

from __future__ import annotations

import copy
import glob
import io
import json
import os
import tarfile
from functools import partial
from pathlib import Path
from typing import Sequence

from cliplab.data.items import ImageItem, Skipped
from cliplab.data.sources.base import ImageSource, SourceError, sorted_classes
from cliplab.data.sources.patterns import expand_braces

WDS_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def webdataset(pattern: str | Sequence[str]) -> ImageSource:
    """Samples of webdataset ``.tar`` shards given as a path, a brace/glob pattern or a list of them.

    Members group by key (the name up to the first dot of the basename). The image is the
    jpg/jpeg/png/webp member, the caption the ``txt`` member, the label ``cls`` or ``json["label"]``;
    the ``json`` content becomes ``meta``. Ids are ``"<shard>#<key>"``. Bytes are read on demand by
    offset. A hard link to an earlier member of the same shard reads that member's data; symbolic
links, devices and other non-files are never read and, like corrupt or missing shards and samples
without an image, land in ``skipped``.
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
    skipped = [Skipped(s, "shard not found", "shard") for s in shards if not os.path.isfile(s)]
    for shard in existing:
        _list_shard(shard, items, skipped)
    labels = {it.label for it in items if it.label is not None}
    name = Path(os.fspath(patterns[0])).stem if len(patterns) == 1 else "webdataset"
    return ImageSource(name=name, items=items, classes=sorted_classes(labels), skipped=skipped)


def _list_shard(shard: str, items: list[ImageItem], skipped: list[Skipped]) -> None:
    """Append the samples of one shard to ``items``; problems go to ``skipped``.

    A shard damaged part-way keeps the samples listed before the damage.
    """
    size = os.path.getsize(shard)
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    with open(shard, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            skipped.append(Skipped(shard, "compressed shard; decompress it to a plain .tar", "shard"))
            return
        f.seek(0)
        try:
            tf = tarfile.open(fileobj=f, mode="r:")
        except (tarfile.TarError, EOFError, OSError) as e:
            skipped.append(Skipped(shard, f"corrupt shard, not a tar file ({e})", "shard"))
            return
        with tf:
            problem = None
            try:
                regular: dict[str, tarfile.TarInfo] = {}  # name -> a regular file's header, links resolved
                for member in tf:
                    if member.isdir():
                        continue
                    if member.islnk() and member.linkname in regular:
                        member = _followed(member, regular[member.linkname])
                    if member.isfile():
                        regular[member.name] = member
                        _add_member(samples, member)
                    else:
                        skipped.append(_not_followed(shard, member))
                if not _rest_is_zero(f, tf.offset):
                    problem = f"unreadable tar header at byte {tf.offset}"
            except (tarfile.TarError, EOFError, OSError) as e:
                problem = str(e) or type(e).__name__
            if problem:
                skipped.append(Skipped(shard, f"corrupt shard ({problem}); samples after it are lost", "shard"))
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


def _followed(link: tarfile.TarInfo, target: tarfile.TarInfo) -> tarfile.TarInfo:
    """A hard link as the regular file it names (an earlier member of the same archive): the
    target's data under the link's name."""
    member = copy.copy(target)
    member.name = link.name
    return member


def _not_followed(shard: str, member: tarfile.TarInfo) -> Skipped:
    """A member that is not a file of this archive: listed, never read (a symbolic link or a hard
    link may point anywhere on the reading machine)."""
    if member.issym():
        reason = "symbolic link member (not followed)"
    elif member.islnk():
        reason = "hard link to a file not in this shard"
    elif member.ischr() or member.isblk():
        reason = "device member"
    elif member.isfifo():
        reason = "fifo member"
    else:
        reason = "not a regular file"
    ext = member.name.rpartition(".")[2].lower()
    return Skipped(f"{shard}#{member.name}", reason, "image" if ext in WDS_IMAGE_EXTENSIONS else "note")


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
            skipped.append(Skipped(item.id + ".json", "invalid JSON (kept the image, no metadata)", "note"))
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


def _read_range(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)
