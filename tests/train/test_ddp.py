"""Data parallel: two gloo processes on the CPU give the loss and the gradients of one process
with the same global batch (open_clip's gather semantics, with and without local loss), and log
the loss of the whole batch."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cliplab.train import TrainConfig, train

from .conftest import MICRO_VIT_CFG, micro_model

pytestmark = pytest.mark.slow  # two processes that each import torch and open_clip: over 20 s on a busy CPU

# (objectives, local_loss, gather_with_grad, prompter)
SETTINGS = [("clip", False, False, "block"), ("clip", True, True, "block"), ("siglip,hardneg:0.5,infoloob", False, False, "block"),
            ("clip,grain,pacl", False, False, "block"),  # region objectives: each rank holds a different number of regions
            ("clip,cloc", False, False, "masked-class")]  # the region loss through every block of the tower
LOGGED = 1  # the setting of the logged run: with local loss each process's own loss is only its share


def _config(out, objectives, local_loss, gather_with_grad, prompter):
    return TrainConfig(data="synthetic:32:2", objectives=objectives, steps=1, batch_size=8, out=str(out), eval_n=0,
                       workers=0, progress=False, device="cpu", grad_clip=None, local_loss=local_loss,
                       gather_with_grad=gather_with_grad, prompter=prompter)  # fmt: skip


def _gradients(out_dir, setting_index):
    """Loss and gradients of one step (weights left unchanged) in the current process group."""
    from cliplab.train.trainer import Trainer

    cfg = _config(out_dir, *SETTINGS[setting_index])
    trainer = Trainer(cfg, model=micro_model(MICRO_VIT_CFG))
    trainer.optimizer.step = lambda: None
    batch = next(iter(trainer._loader()))
    loss, _ = trainer.step(batch)
    grads = {n: p.grad.clone() for n, p in trainer.module.named_parameters() if p.grad is not None}
    grads.update({f"objective.{n}": p.grad.clone() for n, p in trainer.objective_modules.named_parameters() if p.grad is not None})
    return loss, grads


def _worker(rank, port, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    out = {}
    for i in range(len(SETTINGS)):
        out[i] = _gradients(os.path.join(tmp, f"ddp{i}"), i)
    # a whole run last: it ends the process group
    out["trained"] = train(_config(os.path.join(tmp, "trained"), *SETTINGS[LOGGED]), model=micro_model(MICRO_VIT_CFG)).losses
    torch.save(out, os.path.join(tmp, f"rank{rank}.pt"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What each of two gloo processes measured, and their folder."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in (0, 1)], tmp


def test_two_gloo_processes_match_one_process(two_ranks, tmp_path):
    ranks, _ = two_ranks
    for i, setting in enumerate(SETTINGS):
        single_loss, single_grads = _gradients(tmp_path / f"single{i}", i)
        losses = [ranks[r][i][0] for r in (0, 1)]
        assert losses[0] == losses[1] and abs(losses[0] - single_loss) < 1e-5, setting  # the mean over processes
        for r in (0, 1):
            grads = ranks[r][i][1]
            assert grads.keys() == single_grads.keys()
            for name, g in single_grads.items():
                assert torch.allclose(grads[name], g, atol=1e-6, rtol=1e-4), (setting, name)


def test_the_logged_loss_is_the_mean_over_processes(two_ranks, tmp_path):
    ranks, folder = two_ranks
    single = train(_config(tmp_path / "single", *SETTINGS[LOGGED]), model=micro_model(MICRO_VIT_CFG))
    [logged] = [json.loads(line) for line in (folder / "trained" / "metrics.jsonl").read_text().splitlines()]
    assert abs(logged["loss"] - single.losses[0]) < 1e-5 and abs(logged["loss/clip"] - single.losses[0]) < 1e-5
    assert ranks[0]["trained"] == ranks[1]["trained"] == [logged["loss"]]
