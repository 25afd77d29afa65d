"""Parsing a model spec (the load options every backend shares are in ``options``).

Grammar: ``openclip:<arch>`` | ``hf:<repo id or local folder>`` | ``cliplab:<bundled name>`` | a bare
bundled name or alias (``tiny``) | the path of a model folder that cliplab wrote (``models.folder``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cliplab.errors import ModelLoadError
from cliplab.models import bundled
from cliplab.models.folder import MANIFEST, is_model_folder
from cliplab.models.options import check_precision, resolve_device  # noqa: F401  (re-exported)

KINDS = ("openclip", "hf", "cliplab")  # the prefixes; a model folder is named by its path
GRAMMAR = ("openclip:<arch> (e.g. openclip:ViT-B-32), hf:<repo id or folder>, cliplab:<bundled name>, a bundled alias (tiny) "
           "or the path of a model folder that cliplab wrote (train, moe upcycle, un2clip)")


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # one of KINDS, or "folder"
    target: str  # arch, repo id / folder, bundled name, or a model folder's absolute path

    def __str__(self) -> str:
        return self.target if self.kind == "folder" else f"{self.kind}:{self.target}"


def parse_spec(spec: str) -> ModelSpec:
    """Split ``spec`` into backend kind and target; bare words are bundled names."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"empty model spec; use {GRAMMAR}")
    spec = spec.strip()
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in KINDS:
        if not rest.strip():
            raise ModelLoadError(f"model spec {spec!r} names no model after '{prefix}:'; use {GRAMMAR}")
        kind, target = prefix, rest.strip()
        if kind == "cliplab":
            target = bundled.canonical_name(target)
        return ModelSpec(kind, target)
    if not sep and spec in bundled.names():
        return ModelSpec("cliplab", bundled.canonical_name(spec))
    if is_model_folder(spec):
        return ModelSpec("folder", str(Path(spec).resolve()))
    if Path(spec).is_dir():
        raise ModelLoadError(f"folder {spec} holds no cliplab model ({MANIFEST} is missing); name a folder that cliplab train, moe upcycle or un2clip wrote")
    raise ModelLoadError(f"unknown model spec {spec!r}; use {GRAMMAR}")
