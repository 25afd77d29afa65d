"""The load options every backend shares: device and precision.

Imports nothing else from ``cliplab.models``, so the spec parser, the bundled registry and the
backends can all depend on it without importing each other in a circle.
"""

from __future__ import annotations

import torch

from cliplab.models.errors import ModelLoadError

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"unknown device {device!r}: {exc}") from None


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ModelLoadError(f"precision 'fp16' needs a CUDA device (got {device.type}); use 'bf16' or 'fp32' there")
    return precision
