"""Reading checkpoint files safely, checking them against a module, and hashing weights.

Only safetensors and ``torch.load(weights_only=True)`` are used: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from cliplab.errors import ModelLoadError, brief

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file on the CPU: ``state_dict`` unwrapped, ``module.`` stripped."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except RuntimeError as exc:
        if "TorchScript" not in str(exc):
            raise ModelLoadError(f"cannot read weights file {path}: {brief(exc)}") from exc
        raise ModelLoadError(
            f"cannot read weights file {path}: it is a TorchScript archive (like OpenAI's original .pt files), which "
            "cliplab does not load; use the open_clip tag (pretrained='openai') or save its state_dict() as .safetensors"
        ) from exc
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"cannot read weights file {path}: it holds pickled Python objects or is not a torch checkpoint; "
            "cliplab reads only safetensors files and plain torch state dicts"
        ) from exc
    except Exception as exc:  # safetensors / torch raise many types for a damaged file
        raise ModelLoadError(f"cannot read weights file {path}: {brief(exc)}") from exc

    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ModelLoadError(f"weights file {path} does not hold a state dict (got {type(obj).__name__})")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"weights file {path} is not a state dict of tensors (key {key!r} holds {type(value).__name__})")
        state[key[len("module.") :] if key.startswith("module.") else key] = value
    return state


def check_compatible(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path, target: str) -> None:
    """Raise a one-line error naming ``source`` and the first missing / unexpected / mis-shaped key."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    if misshaped:
        k = misshaped[0]
        problems.append(
            f"{len(misshaped)} mis-shaped key(s), first {k!r} "
            f"(file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)})"
        )
    if problems:
        raise ModelLoadError(f"weights file {source} does not match {target}: {'; '.join(problems)}")


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(*paths: str | Path) -> str:
    """sha256 of the files' bytes (in the order given); each file is read once per process."""
    if len(paths) != 1:
        digest = hashlib.sha256()
        for p in paths:
            digest.update(file_sha256(p).encode())
        return digest.hexdigest()
    real = os.path.realpath(paths[0])
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict (for weights with no file)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
