"""Checkpoints: weights as safetensors, the rest of the training state as a plain tensor dict.

``checkpoints/step_0000100/model.safetensors`` holds the model (and ``objectives.safetensors``
the objectives' own parameters); ``state.pt`` holds the optimizer, scheduler, loss-scaler and
RNG states, read back with ``torch.load(weights_only=True)`` (nothing is unpickled).

Files are serialised in memory and written with Python's own file writes, so a full disk is an
``OSError`` (safetensors and ``torch.save`` writing by path raise their own error types instead).
"""

from __future__ import annotations

import io
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from cliplab.errors import InputError, brief, how_to_pass
from cliplab.files import atomic_folder

CHECKPOINTS = "checkpoints"


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()}


def rng_state() -> dict:
    """torch's generators: the only global randomness training uses (batches are drawn from (seed, step))."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def torch_bytes(obj: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save(run_dir: Path, step: int, module: torch.nn.Module, objectives: torch.nn.Module, trainer_state: dict, keep: int) -> Path:
    """Write checkpoint ``step`` atomically and drop all but the last ``keep``; on a write error
    (a full disk) nothing of it is left and the earlier checkpoints stay as they were."""
    root = Path(run_dir) / CHECKPOINTS
    target = root / f"step_{step:07d}"
    if target.exists():
        shutil.rmtree(target)
    try:
        with atomic_folder(target) as tmp:
            (tmp / "model.safetensors").write_bytes(safetensors_bytes(state_tensors(module)))
            own = state_tensors(objectives)
            if own:
                (tmp / "objectives.safetensors").write_bytes(safetensors_bytes(own))
            (tmp / "state.pt").write_bytes(torch_bytes({**trainer_state, "step": step, "rng": rng_state()}))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(target)) from exc  # the checkpoint's name, not the temporary one
    for old in sorted(root.glob("step_*"))[: -max(1, keep)]:
        shutil.rmtree(old)
    return target


def latest(run_dir: Path) -> Path | None:
    found = sorted((Path(run_dir) / CHECKPOINTS).glob("step_*"))
    return found[-1] if found else None


def load(folder: Path, module: torch.nn.Module, objectives: torch.nn.Module) -> dict:
    """Restore weights into ``module``/``objectives`` and return the trainer state (RNG already set);
    a damaged checkpoint is one clear error."""
    try:
        module.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(next(module.parameters()).device)))
        own = folder / "objectives.safetensors"
        if own.is_file():
            objectives.load_state_dict(load_file(str(own)))
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        set_rng_state(state["rng"])
    # what safetensors and torch raise for a truncated, overwritten or missing file, or other tensors
    except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        raise InputError(f"checkpoint {folder} cannot be read ({brief(exc)}); delete that folder to continue from the one "
                         f"before it, or drop {how_to_pass('resume')} and start a new run in another folder") from exc  # fmt: skip
    return state
