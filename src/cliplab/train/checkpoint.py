"""Checkpoints: weights as safetensors, the rest of the training state as a plain tensor dict.

``checkpoints/step_0000100/model.safetensors`` holds the model (and ``objectives.safetensors``
the objectives' own parameters); ``state.pt`` holds the optimizer, scheduler, loss-scaler and
RNG states, read back with ``torch.load(weights_only=True)`` (nothing is unpickled).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

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


def save(run_dir: Path, step: int, module: torch.nn.Module, objectives: torch.nn.Module, trainer_state: dict, keep: int) -> Path:
    """Write checkpoint ``step`` atomically and drop all but the last ``keep``."""
    root = Path(run_dir) / CHECKPOINTS
    target = root / f"step_{step:07d}"
    if target.exists():
        shutil.rmtree(target)
    with atomic_folder(target) as tmp:
        save_file(state_tensors(module), str(tmp / "model.safetensors"))
        own = state_tensors(objectives)
        if own:
            save_file(own, str(tmp / "objectives.safetensors"))
        torch.save({**trainer_state, "step": step, "rng": rng_state()}, tmp / "state.pt")
    for old in sorted(root.glob("step_*"))[: -max(1, keep)]:
        shutil.rmtree(old)
    return target


def latest(run_dir: Path) -> Path | None:
    found = sorted((Path(run_dir) / CHECKPOINTS).glob("step_*"))
    return found[-1] if found else None


def load(folder: Path, module: torch.nn.Module, objectives: torch.nn.Module) -> dict:
    """Restore weights into ``module``/``objectives`` and return the trainer state (RNG already set)."""
    module.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(next(module.parameters()).device)))
    own = folder / "objectives.safetensors"
    if own.is_file():
        objectives.load_state_dict(load_file(str(own)))
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    set_rng_state(state["rng"])
    return state
