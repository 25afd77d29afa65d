"""Data-parallel launch: read torchrun's environment, start the process group, pick the device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start(device: str | None = None) -> Runtime:
    """One process of ``torchrun --nproc-per-node N`` (or a plain single process).

    Under torchrun the group uses NCCL on CUDA and gloo on CPU; each process takes GPU
    ``LOCAL_RANK`` when CUDA is used.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    return Runtime(rank, world, local_rank, dev)


def stop(runtime: Runtime) -> None:
    if runtime.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def average_gradients(params: list[torch.nn.Parameter], runtime: Runtime) -> None:
    """All-reduce-mean the gradients of parameters DDP does not manage (the objectives' own)."""
    if runtime.world_size == 1:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= runtime.world_size


def mean_over_ranks(values: list[float], runtime: Runtime) -> list[float]:
    """``values`` averaged over all processes (each passes its own, in the same order)."""
    if runtime.world_size == 1:
        return values
    import torch.distributed as dist

    total = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(total)
    return (total / runtime.world_size).tolist()
