"""``open_source``: pick the source for a spec by its form."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from cliplab.data.sources.base import ImageSource, SourceError
from cliplab.data.sources.folder import image_folder
from cliplab.data.sources.manifests import MANIFEST_EXTENSIONS, manifest
from cliplab.data.sources.shards import webdataset
from cliplab.data.sources.synthetic import synthetic_source

_ACCEPTED = (
    "a folder of images, a .csv/.tsv/.jsonl manifest, .tar shards (e.g. 'shards/{000..009}.tar') "
    "or 'synthetic:<n>[:seed]'"
)


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
    except ValueError as exc:
        raise SourceError(f"cannot read {text!r}; write 'synthetic:<n>' or 'synthetic:<n>:<seed>' with integers") from exc
    return n, seed
