"""The trainer: a run that learns, bit-exact resume, accumulation, the saved weights, the run folder."""

import json
import math
import time

import pytest
import torch
import yaml

from cliplab.errors import InputError
from cliplab.models.base import Model
from cliplab.models import load_model
from cliplab.train import TrainConfig, checkpoint, train
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
    cfg = config(tmp_path, "resumed", ckpt_every=0)  # stop_after checkpoints its step even so
    part = train(cfg, model=micro_model(), stop_after=3)  # as if interrupted right after step 3
    assert part.steps_run == 3 and not (tmp_path / "resumed" / "model.safetensors").exists()
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step_0000003"]
    rest = train(cfg, model=micro_model(), resume=True)
    assert part.losses + rest.losses == straight.losses  # exactly equal floats
    a = load_model_weights(tmp_path / "straight" / "model.safetensors")
    b = load_model_weights(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]


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


def test_the_run_folder_is_a_model_and_trains_on(tmp_path):
    train(config(tmp_path, model="tiny", steps=1, objectives="clip", batch_size=4, ckpt_every=0))
    run = tmp_path / "run"
    trained = load_model_weights(run / "model.safetensors")
    for model in (load_model(str(run), device="cpu"), load_model("tiny", pretrained=run / "model.safetensors", device="cpu")):
        assert torch.equal(model.torch_module.state_dict()["positional_embedding"], trained["positional_embedding"])
    assert load_model(str(run)).name == str(run.resolve())
    # a run that starts from the folder writes a folder on the same base architecture
    cfg = config(tmp_path, "again", model=str(run), steps=1, objectives="clip", batch_size=4, ckpt_every=0)
    train(cfg)
    manifest = json.loads((tmp_path / "again" / "cliplab_model.json").read_text())
    assert manifest == {"kind": "clip", "base": "cliplab:shapes-tiny", "weights": "model.safetensors"}
    again = load_model(str(tmp_path / "again"), device="cpu")
    assert not torch.equal(again.torch_module.state_dict()["positional_embedding"], trained["positional_embedding"])


class SlowBatches(torch.utils.data.IterableDataset):
    """One fixed batch of 8 random images and captions, each after ``seconds`` of waiting."""

    def __init__(self, model, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.batch = {"ids": [str(i) for i in range(8)], "pixels": torch.randn(8, 3, 32, 32),
                      "tokens": model.tokenize([f"caption {i}" for i in range(8)]), "caption_ids": torch.arange(8)}  # fmt: skip

    def __iter__(self):
        while True:
            time.sleep(self.seconds)
            yield self.batch


def test_samples_per_s_counts_data_and_steps_not_evaluation_or_checkpoints(tmp_path, monkeypatch):
    save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda *a, **kw: (time.sleep(0.2), save(*a, **kw)))
    model = micro_model(MICRO_VIT_CFG)
    cfg = config(tmp_path, steps=4, objectives="clip", ckpt_every=1, eval_every=2)
    result = train(cfg, model=model, batches=lambda start: SlowBatches(model, 0.1), evaluate=lambda m: time.sleep(0.3) or {"n": 1})
    lines = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    for r in lines:
        assert r["data_s"] >= 0.1 and r["step_s"] > 0
        assert r["samples_per_s"] == pytest.approx(8 / (r["data_s"] + r["step_s"]))
        assert r["samples_per_s_per_rank"] == r["samples_per_s"]  # one process
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    train_s = summary["data_s"] + summary["step_s"]
    assert train_s == pytest.approx(sum(r["data_s"] + r["step_s"] for r in lines))
    assert summary["samples_per_s"] == pytest.approx(4 * 8 / train_s) == result.samples_per_s
    # the evaluation at step 2 (0.3 s) and the 4 checkpoints (0.2 s each) ran inside the timed loop
    assert train_s < summary["wall_s"] - 0.3 - 4 * 0.2


def test_a_custom_evaluation_runs_on_the_model_in_eval_mode(tmp_path):
    model = micro_model(MICRO_VIT_CFG)
    seen = []

    def evaluate(m: Model) -> dict:
        seen.append(m.torch_module.training)
        return {"calls": len(seen)}

    result = train(config(tmp_path, steps=4, objectives="clip", eval_every=2), model=model, evaluate=evaluate)
    assert result.evals == [{"step": 0, "eval": {"calls": 1}}, {"step": 2, "eval": {"calls": 2}}, {"step": 4, "eval": {"calls": 3}}]
    assert seen == [False, False, False] and model.torch_module.training
    logged = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "eval" in r]
    assert logged == result.evals


@pytest.mark.parametrize(("spec", "settings", "evaluated"), [
    ("cliplab:shapes-tiny", {}, True), ("openclip:ViT-B-32", {}, False), ("hf:openai/clip-vit-base-patch32", {}, False),
    ("openclip:ViT-B-32", {"evaluate": "scenes"}, True), ("cliplab:shapes-tiny", {"evaluate": "none"}, False),
])  # fmt: skip
def test_scene_evaluation_is_the_default_for_cliplab_models_only(tmp_path, spec, settings, evaluated):
    cfg = config(tmp_path, model=spec, eval_n=8, steps=1, objectives="clip", ckpt_every=0, **settings)
    result = train(cfg, model=micro_model(MICRO_VIT_CFG))  # the spec names the model; the micro model stands in
    assert [e["step"] for e in result.evals] == ([0, 1] if evaluated else [])
    assert all("colour_binding" in e["eval"] for e in result.evals)


def test_an_unknown_evaluation_is_refused():
    with pytest.raises(InputError, match="unknown evaluate 'accuracy'; use auto, none or a comma list of scenes, regions, dense"):
        TrainConfig(evaluate="accuracy").check()


def test_a_frozen_tower_stays_in_eval_mode_and_keeps_its_batch_norm_statistics(tmp_path):
    model = micro_model()  # a ResNet image tower with batch norm
    module = model.torch_module
    module.visual.requires_grad_(False)
    before = {k: v.clone() for k, v in module.visual.state_dict().items()}
    seen = []
    train(config(tmp_path, steps=2, objectives="clip", ckpt_every=0, eval_every=1), model=model,
          evaluate=lambda m: seen.append(m.torch_module.training) or {})  # fmt: skip
    assert seen == [False, False, False]
    assert module.training and module.transformer.training and not module.visual.training
    assert not any(part.training for part in module.visual.modules())
    after = module.visual.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running means and variances included
    assert any("running_mean" in k for k in before)


@pytest.mark.parametrize("tower", ["image", "text"])
def test_a_locked_tower_learns_nothing_and_the_other_learns(tmp_path, tower):
    from cliplab.train.trainer import image_parameters, text_parameters

    model = micro_model()  # a ResNet image tower: its batch-norm statistics must stay put when it is locked
    parts = {"image": image_parameters(model), "text": text_parameters(model)}
    before = {name: [p.detach().clone() for p in params] for name, params in parts.items()}
    stats = {k: v.clone() for k, v in model.torch_module.visual.state_dict().items() if "running" in k}
    train(config(tmp_path, steps=2, objectives="clip", ckpt_every=0, **{f"lock_{tower}": True}), model=model)
    other = "text" if tower == "image" else "image"
    assert all(torch.equal(b, p) for b, p in zip(before[tower], parts[tower]))
    assert not any(torch.equal(b, p) for b, p in zip(before[other], parts[other]) if p.requires_grad and p.ndim >= 2)
    moved = [not torch.equal(v, model.torch_module.visual.state_dict()[k]) for k, v in stats.items()]
    assert stats and (not any(moved) if tower == "image" else any(moved))


def test_the_image_and_text_parameters_split_the_model_but_the_logit_scale():
    from cliplab.train.trainer import image_parameters, text_parameters

    model = micro_model()
    image, text = {id(p) for p in image_parameters(model)}, {id(p) for p in text_parameters(model)}
    rest = [name for name, p in model.torch_module.named_parameters() if id(p) not in image | text]
    assert not image & text and rest == ["logit_scale"]
    assert {id(p) for p in model.torch_module.visual.parameters()} == image


def test_training_leaves_the_global_random_state_and_the_warnings_filters_alone(tmp_path):
    import warnings

    model = micro_model(MICRO_VIT_CFG)
    before, filters = torch.get_rng_state(), list(warnings.filters)
    seen = []
    train(config(tmp_path, steps=2, objectives="clip", ckpt_every=0), model=model, evaluate=lambda m: seen.append(list(warnings.filters)) or {})
    assert torch.equal(torch.get_rng_state(), before)
    assert seen and all(f == filters for f in seen) and warnings.filters == filters
