"""The load options every backend shares: device and precision.

Imports nothing else from ``cliplab.models`` at module level, so the spec parser, the bundled
registry and the backends can all depend on it without importing each other in a circle; and not
torch either, so the command line can offer the precision names without paying torch's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliplab.errors import ModelLoadError, how_to_pass

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
CHOICES = (*PRECISIONS, "auto")
# The default of ``load_model`` and of every command's ``--precision``: fp32 so that the same call gives
# the same numbers on every machine (open_clip and transformers also load fp32); ``auto`` is one flag away.
DEFAULT_PRECISION = "fp32"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to load on: default cuda when available, else cpu; a device this machine lacks is an error."""
    import torch

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
