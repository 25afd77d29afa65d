"""Model folders: a model that cliplab writes (``train``, ``moe upcycle``, ``un2clip``) loads by its path.

A folder holds ``cliplab_model.json`` (``{"kind": ..., "base": <the spec it was made from>, "weights":
"model.safetensors", ...}``) beside its weights. ``kind`` picks the loader in ``LOADERS``: ``"clip"`` is
the base architecture with new weights; a module that writes another architecture registers its kind there.
An optional ``"prompter"`` names the region prompter (``model.region_prompter``): CLOC's, a file beside
the weights, or ``"masked-class"`` (the tower's own class token, :mod:`cliplab.dense.masked_class`).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cliplab.errors import ModelLoadError
from cliplab.files import atomic_write

if TYPE_CHECKING:
    from cliplab.models.base import Model

MANIFEST = "cliplab_model.json"
# kind -> "module:function(folder, manifest, device, precision) -> Model"
LOADERS: dict[str, str] = {"clip": "cliplab.models.folder:load_clip_folder", "moe": "cliplab.models.moe:load_moe_folder"}


def is_model_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder that cliplab wrote a model into."""
    return (Path(path) / MANIFEST).is_file()


def write_manifest(folder: str | os.PathLike, kind: str, base: str, weights: str = "model.safetensors", **extra: Any) -> Path:
    """Write ``folder/cliplab_model.json`` (atomically); ``extra`` holds what the kind's loader needs."""
    if kind not in LOADERS:
        raise ValueError(f"unknown model folder kind {kind!r}; known: {', '.join(sorted(LOADERS))}")
    manifest = {"kind": kind, "base": base, "weights": weights, **extra}
    return atomic_write(Path(folder) / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder's manifest, checked: a kind cliplab knows, a base spec and a weights file that exists."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the model folder's manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not {"kind", "base", "weights"} <= manifest.keys():
        raise ModelLoadError(f"{path} is not a cliplab model manifest (it needs kind, base and weights)")
    if manifest["kind"] not in LOADERS:
        raise ModelLoadError(f"{path} has model kind {manifest['kind']!r}, which this cliplab cannot load; known: {', '.join(sorted(LOADERS))}")
    if not (Path(folder) / manifest["weights"]).is_file():
        raise ModelLoadError(f"model folder {folder} has no weights file {manifest['weights']}; was it copied whole?")
    return manifest


def base_spec(folder: str | os.PathLike) -> str:
    """The spec the folder's model was made from (through any chain of folders)."""
    from cliplab.models.spec import parse_spec

    spec = parse_spec(read_manifest(folder)["base"])
    return base_spec(spec.target) if spec.kind == "folder" else str(spec)


def manifest_for(spec: str) -> dict[str, Any]:
    """The manifest fields (all but ``weights``) for new weights of the model that ``spec`` loads."""
    from cliplab.models.spec import parse_spec

    parsed = parse_spec(spec)
    if parsed.kind != "folder":
        return {"kind": "clip", "base": str(parsed)}
    return {k: v for k, v in read_manifest(parsed.target).items() if k != "weights"}


def load_folder(folder: str | os.PathLike, device=None, precision: str = "fp32") -> Model:
    """Load the model in ``folder``; its ``name`` is the folder's path."""
    manifest = read_manifest(folder)
    module, _, function = LOADERS[manifest["kind"]].partition(":")
    model = getattr(importlib.import_module(module), function)(Path(folder), manifest, device, precision)
    if "prompter" in manifest:  # the region prompter Model.encode_regions reads boxes with (cliplab.dense.prompter)
        from cliplab.dense.prompter import named_prompter

        model.region_prompter = named_prompter(folder, manifest["prompter"], model.device)
    _ = model.identity  # fixed first (base spec + weights digest), so a moved or copied folder keeps its cached embeddings
    model.name = str(Path(folder).resolve())
    return model


def load_clip_folder(folder: Path, manifest: dict[str, Any], device, precision: str) -> Model:
    """The ``"clip"`` kind: the base spec's architecture with the folder's weights."""
    from cliplab.models import load_model

    return load_model(manifest["base"], pretrained=folder / manifest["weights"], device=device, precision=precision)
