"""The trainer: a run that learns, bit-exact resume, accumulation, the saved weights, the run folder."""

import json
import math

import pytest
import torch
import yaml

from cliplab.errors import InputError
from cliplab.models import load_model
from cliplab.train import TrainConfig, train
from cliplab.train.config import from_yaml
from cliplab.train.schedule import cosine_with_warmup

from .conftest import MICRO_VIT_CFG, micro_model


def config(tmp_path, name="run", **kw):
    base = {"data": "synthetic:64:5", "objectives": "clip,hardneg:0.5", "steps": 6, "batch_size": 8, "lr": 1e-3, "warmup": 2,
            "out": str(tmp_path / name), "ckpt_every": 3, "eval_n": 0, "log_every": 1, "workers": 0, "progress": False, "device": "cpu"}
    base.update(kw)
    return TrainConfig(**base)


def test_resume_continues_bit_for_bit(tmp_path):
    straight = train(config(tmp_path, "straight"), model=micro_model())
    cfg = config(tmp_path, "resumed")
    part = _train_prefix(cfg, stop=3)  # interrupted right after the step-3 checkpoint
    rest = train(cfg, model=micro_model(), resume=True)
    assert part + rest.losses == straight.losses  # exactly equal floats
    a = load_model_weights(tmp_path / "straight" / "model.safetensors")
    b = load_model_weights(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]


def _train_prefix(cfg, stop):
    """Run ``cfg`` but interrupt it right after step ``stop`` (its checkpoint is written)."""
    from cliplab.train.trainer import Trainer

    trainer = Trainer(cfg, model=micro_model())
    losses = []
    for step, batch in enumerate(trainer._loader()):
        losses.append(trainer.step(batch)[0])
        trainer.log.add({"step": step + 1})
        if step + 1 == stop:
            trainer._save_checkpoint(stop)
            break
    trainer.close()
    return losses


def load_model_weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_training_lowers_the_loss_and_writes_the_run_folder(tmp_path):
    cfg = config(tmp_path, steps=12, objectives="clip", ckpt_every=0)
    result = train(cfg, model=micro_model(MICRO_VIT_CFG))
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    out = tmp_path / "run"
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["objectives"] == "clip" and "cliplab_version" in recorded and recorded["steps"] == 12
    assert from_yaml(out / "config.yaml").steps == 12  # the recorded config runs again
    assert json.loads((out / "summary.json").read_text())["samples_per_s"] > 0
    assert len(list((out / "checkpoints").iterdir())) == 1  # only the last is kept


def test_accumulation_gives_the_full_batch_gradient(tmp_path):
    from cliplab.train.trainer import Trainer

    grads = []
    for accum in (1, 2):
        model = micro_model(MICRO_VIT_CFG)
        trainer = Trainer(config(tmp_path, f"accum{accum}", objectives="clip,hardneg", steps=1, accum=accum, grad_clip=None), model=model)
        trainer.optimizer.step = lambda: None  # keep the weights: compare gradients only
        trainer.step(next(iter(trainer._loader())))
        grads.append({n: p.grad.clone() for n, p in model.torch_module.named_parameters() if p.grad is not None})
        trainer.close()
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4), name


def test_logit_scale_is_clamped(tmp_path):
    model = micro_model(MICRO_VIT_CFG)
    with torch.no_grad():
        model.torch_module.logit_scale.fill_(math.log(100) + 0.5)
    train(config(tmp_path, steps=1, objectives="clip", ckpt_every=0), model=model)
    assert float(model.torch_module.logit_scale) <= math.log(100) + 1e-6


def test_schedule_warms_up_then_decays_to_zero():
    assert cosine_with_warmup(0, 10, 2) == 0.5 and cosine_with_warmup(1, 10, 2) == 1.0
    assert cosine_with_warmup(2, 10, 2) == 1.0 and cosine_with_warmup(10, 10, 2) == pytest.approx(0.0)


def test_existing_run_needs_resume(tmp_path):
    train(config(tmp_path, steps=1, objectives="clip", ckpt_every=0), model=micro_model(MICRO_VIT_CFG))
    with pytest.raises(InputError, match="--resume"):
        train(config(tmp_path, steps=1, objectives="clip", ckpt_every=0), model=micro_model(MICRO_VIT_CFG))


def test_trained_bundled_weights_load_with_the_same_spec(tmp_path):
    cfg = config(tmp_path, model="tiny", steps=1, objectives="clip", batch_size=4, ckpt_every=0)
    train(cfg)
    model = load_model("tiny", pretrained=tmp_path / "run" / "model.safetensors", device="cpu")
    trained = load_model_weights(tmp_path / "run" / "model.safetensors")
    assert torch.equal(model.torch_module.state_dict()["positional_embedding"], trained["positional_embedding"])
