"""Data parallel: two gloo processes on the CPU give the loss and the gradients of one process
with the same global batch (open_clip's gather semantics, with and without local loss)."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cliplab.train import TrainConfig

# (objectives, local_loss, gather_with_grad)
SETTINGS = [("clip", False, False), ("clip", True, True), ("siglip,hardneg:0.5,infoloob", False, False)]


def _config(out, objectives, local_loss, gather_with_grad):
    return TrainConfig(data="synthetic:32:2", objectives=objectives, steps=1, batch_size=8, out=str(out), eval_n=0,
                       workers=0, progress=False, device="cpu", grad_clip=None, local_loss=local_loss,
                       gather_with_grad=gather_with_grad)  # fmt: skip


def _gradients(out_dir, setting_index):
    """Loss and gradients of one step (weights left unchanged) in the current process group."""
    from cliplab.train.trainer import Trainer

    from .conftest import MICRO_VIT_CFG, micro_model

    cfg = _config(out_dir, *SETTINGS[setting_index])
    trainer = Trainer(cfg, model=micro_model(MICRO_VIT_CFG))
    trainer.optimizer.step = lambda: None
    batch = next(iter(trainer._loader()))
    loss, _ = trainer.step(batch)
    grads = {n: p.grad.clone() for n, p in trainer.module.named_parameters() if p.grad is not None}
    grads.update({f"objective.{n}": p.grad.clone() for n, p in trainer.objective_modules.named_parameters() if p.grad is not None})
    return loss, grads


def _worker(rank, port, tmp, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    out = {}
    for i in range(len(SETTINGS)):
        out[i] = _gradients(os.path.join(tmp, f"ddp{i}"), i)
    torch.save(out, os.path.join(tmp, f"rank{rank}.pt"))
    import torch.distributed as dist

    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), None), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for i, setting in enumerate(SETTINGS):
        single_loss, single_grads = _gradients(tmp_path / f"single{i}", i)
        losses = [ranks[r][i][0] for r in (0, 1)]
        # every rank holds the global loss, or (local loss) its share whose mean is the global loss
        assert abs(sum(losses) / 2 - single_loss) < 1e-5, setting
        for r in (0, 1):
            grads = ranks[r][i][1]
            assert grads.keys() == single_grads.keys()
            for name, g in single_grads.items():
                assert torch.allclose(grads[name], g, atol=1e-6, rtol=1e-4), (setting, name)
