"""The embedding cache folder as a whole: where it lives by default, what it holds, emptying it.

Default location: ``$XDG_CACHE_HOME/cliplab/embeddings``, else ``~/.cache/cliplab/embeddings``
(read at call time, so a test or a notebook can move it). One sub-folder per namespace (model
identity, precision, decode policy; see ``cache.py``), each with a ``model.txt`` naming them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


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
    """Every namespace under ``root`` (none if it does not exist), largest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = folder / "model.txt"
        description = label.read_text(encoding="utf-8", errors="replace").strip() if label.is_file() else ""
        chunks = sorted(folder.glob("chunk-*.safetensors"))
        size = sum(_size(p) for p in folder.iterdir() if p.is_file())
        found.append(
            Namespace(
                folder=folder,
                model=description.split("|", 1)[0].split("\n", 1)[0] or "(unknown)",
                description=description,
                chunks=len(chunks),
                rows=sum(_rows(p) for p in chunks),
                bytes=size,
            )
        )
    return sorted(found, key=lambda ns: -ns.bytes)


def clear(root: str | os.PathLike, model: str | None = None) -> list[Namespace]:
    """Delete every namespace under ``root`` (or only those of ``model``, a spec whose canonical
    form is compared); returns what was deleted."""
    wanted = canonical(model) if model else None
    gone = []
    for ns in namespaces(root):
        if wanted is None or ns.model == wanted:
            shutil.rmtree(ns.folder, ignore_errors=True)
            gone.append(ns)
    return gone


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


def _rows(path: Path) -> int:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return int((f.metadata() or {}).get("rows", 0))
    except (OSError, ValueError, SafetensorError):  # damaged: counts as empty; embed() reports and removes it
        return 0
