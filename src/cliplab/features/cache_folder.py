"""The embedding cache folder as a whole: where it lives by default, what it holds, emptying it.

Default location: ``$XDG_CACHE_HOME/cliplab/embeddings``, else ``~/.cache/cliplab/embeddings``
(read at call time, so a test or a notebook can move it). One sub-folder per namespace (model
identity, precision, decode policy; see ``cache.py``), each with a ``model.txt`` naming them and
the cache's marker; nothing else under the folder is counted or deleted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cliplab.features.cache import LABEL, is_cache_file, is_namespace_folder


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cliplab/embeddings``, else ``~/.cache/cliplab/embeddings``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cliplab" / "embeddings"


@dataclass(frozen=True)
class Namespace:
    """One model's part of the cache: its folder, the model spec, the lines of ``model.txt``, size."""

    folder: Path
    model: str  # the spec the identity starts with, e.g. "openclip:ViT-B-32"
    description: str  # model.txt: identity, precision, decode policy
    chunks: int
    rows: int
    bytes: int

    @property
    def precision(self) -> str:
        for line in self.description.splitlines():
            if line.startswith("precision="):
                return line.split("=", 1)[1]
        return "?"


def namespaces(root: str | os.PathLike) -> list[Namespace]:
    """Every namespace under ``root`` (none if it does not exist), largest first; folders the cache
    did not make are not namespaces (see ``not_namespaces``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and is_namespace_folder(p)):
        label = folder / LABEL
        description = label.read_text(encoding="utf-8", errors="replace").strip() if label.is_file() else ""
        chunks = sorted(folder.glob("chunk-*.safetensors"))
        size = sum(_size(p) for p in folder.iterdir() if p.is_file())
        found.append(
            Namespace(
                folder=folder,
                model=description.split("|", 1)[0].split("\n", 1)[0] or "(unknown)",
                description=description,
                chunks=len(chunks),
                rows=_distinct_rows(chunks),
                bytes=size,
            )
        )
    return sorted(found, key=lambda ns: -ns.bytes)


def not_namespaces(root: str | os.PathLike) -> list[Path]:
    """The sub-folders of ``root`` the cache did not make (never counted, never deleted)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_namespace_folder(p))


def clear(root: str | os.PathLike, model: str | None = None) -> tuple[list[Namespace], list[str]]:
    """Delete every namespace under ``root`` (or only those of ``model``, a spec whose canonical
    form is compared): the files the cache wrote, then the folder once empty.

    Returns (what was deleted, one line for each folder left alone: not the cache's, or holding
    files the cache did not write).
    """
    wanted = canonical(model) if model else None
    gone, kept = [], [f"left alone {p}: not a cliplab cache folder" for p in not_namespaces(root)]
    for ns in namespaces(root):
        if wanted is not None and ns.model != wanted:
            continue
        foreign = _empty_namespace(ns.folder)
        if foreign:
            kept.append(f"left alone {ns.folder}: it holds files the cache did not write ({', '.join(foreign[:3])}); cached embeddings removed")
        gone.append(ns)
    return gone, kept


def _empty_namespace(folder: Path) -> list[str]:
    """Delete the cache's own files in ``folder``, then the folder if that empties it; returns the
    names of what else is there (left in place)."""
    foreign = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.is_symlink() and is_cache_file(p.name):
            p.unlink(missing_ok=True)
        else:
            foreign.append(p.name)
    if not foreign:
        folder.rmdir()
    return foreign


def canonical(spec: str) -> str:
    """A model spec as identities spell it (``tiny`` -> ``cliplab:shapes-tiny``); unknown bare words stay."""
    from cliplab.errors import CliplabError
    from cliplab.models.spec import parse_spec

    try:
        return str(parse_spec(spec))
    except CliplabError:
        return spec.strip()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _distinct_rows(chunks: list[Path]) -> int:
    """Embeddings held by ``chunks``, each image content counted once (runs at the same time each
    write their own chunk of the same images)."""
    from safetensors import SafetensorError, safe_open

    keys: set[bytes] = set()
    for path in chunks:
        try:
            with safe_open(str(path), framework="numpy") as f:
                hashes = f.get_tensor("hashes")
        except (OSError, ValueError, SafetensorError):  # damaged: counts as empty; embed() reports and removes it
            continue
        keys.update(bytes(h) for h in hashes)
    return len(keys)
