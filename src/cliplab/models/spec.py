"""Parsing a model spec and the load options (device, precision) shared by every backend.

Grammar: ``openclip:<arch>`` | ``hf:<repo id or local folder>`` | ``cliplab:<bundled name>`` | a bare
bundled name or alias (``tiny``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cliplab.errors import ModelLoadError, how_to_pass

KINDS = ("openclip", "hf", "cliplab")
GRAMMAR = "openclip:<arch> (e.g. openclip:ViT-B-32), hf:<repo id or folder>, cliplab:<bundled name> or a bundled alias (tiny)"


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # one of KINDS
    target: str  # arch, repo id / folder, or bundled name

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_spec(spec: str) -> ModelSpec:
    """Split ``spec`` into backend kind and target; bare words are bundled names."""
    from cliplab.models import bundled

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
    raise ModelLoadError(f"unknown model spec {spec!r}; use {GRAMMAR}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to load on: default cuda when available, else cpu; a device this machine lacks is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"unknown device {device!r}: {exc}; use {how_to_pass('device', 'cpu')} or 'cuda'") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {str(device)!r} needs a CUDA GPU and torch sees none on this machine; use {how_to_pass('device', 'cpu')}")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    elif resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ModelLoadError(f"device {str(device)!r} is not available here; use {how_to_pass('device', 'cpu')}")
    return resolved


def check_precision(precision: str, device: torch.device) -> str:
    """The effective precision for ``precision`` on ``device`` ("auto" resolved); see ``models.precision``."""
    from cliplab.models.precision import resolve_precision

    return resolve_precision(precision, device)[0]
