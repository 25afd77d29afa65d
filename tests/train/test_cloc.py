"""CLOC: the loss against a direct computation, the prompter (shape, gradients, the box matters, one
block's prompt row), its save -> load -> encode_regions round trip, and resume with cloc on."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliplab.data import synthetic
from cliplab.data.regions import scene_regions
from cliplab.dense.masked_class import MaskedClassPrompter, box_class_tokens
from cliplab.dense.prompter import FLOOR, Prompter, box_bias, fourier_features
from cliplab.models import load_model
from cliplab.models.vision_parts import vision_parts
from cliplab.train import TrainConfig, train
from cliplab.train.objectives import build_objectives
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.region_features import Regions, student_pass
from cliplab.train.trainer import Trainer

from .conftest import MICRO_VIT_CFG, micro_model


def direct_loss(regions, phrases, ids, scale, predicted=None, target=None, true=None) -> float:
    """L_region + L_ground with loops over regions: hand-spread multi-positive targets (phrase j is a
    positive of region i when ``ids[j]`` is one of ``true[i]``, by default ``[ids[i]]``), GIoU from areas;
    L_region alone without ``predicted``."""
    true = [[x] for x in ids] if true is None else true
    r = [v / np.linalg.norm(v) for v in regions.double().numpy()]
    t = [v / np.linalg.norm(v) for v in phrases.double().numpy()]
    m = len(r)
    contrastive = 0.0
    for i in range(m):
        for a, b, positives in ((r, t, [j for j in range(m) if ids[j] in true[i]]),  # region -> phrases
                                (t, r, [j for j in range(m) if ids[i] in true[j]])):  # phrase -> regions
            logits = [scale * float(a[i] @ b[j]) for j in range(m)]
            log_z = math.log(sum(math.exp(x) for x in logits))
            contrastive += -sum((logits[j] - log_z) / len(positives) for j in positives)
    ground = 0.0
    for p, g in zip([] if predicted is None else predicted.double().tolist(), [] if target is None else target.double().tolist()):
        ground += sum(abs(x - y) for x, y in zip(p, g))
        (px0, py0, px1, py1), (gx0, gy0, gx1, gy1) = ([c[0] - c[2] / 2, c[1] - c[3] / 2, c[0] + c[2] / 2, c[1] + c[3] / 2] for c in (p, g))
        inter = max(0.0, min(px1, gx1) - max(px0, gx0)) * max(0.0, min(py1, gy1) - max(py0, gy0))
        union = (px1 - px0) * (py1 - py0) + (gx1 - gx0) * (gy1 - gy0) - inter
        hull = (max(px1, gx1) - min(px0, gx0)) * (max(py1, gy1) - min(py0, gy0))
        ground += 1 - (inter / union - (hull - union) / hull)
    return contrastive / (2 * m) + ground / m


def tiny_step(seed: int = 0, boxes=None, true_ids=None, prompter="block"):
    """A micro ViT (32 px, 16-px patches), two images, four regions (two share a phrase), the cloc objective."""
    model = micro_model(MICRO_VIT_CFG)
    parts = vision_parts(model)
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 3, 32, 32, generator=gen)
    if boxes is None:
        boxes = torch.tensor([[0, 0, 0, 16, 16], [0, 8, 4, 30, 28], [1, 2, 2, 12, 20], [1, 16, 16, 32, 32.0]])
    text = torch.randn(len(boxes), 16, generator=gen, requires_grad=True)
    phrase_ids = torch.tensor([7, 3, 7, 11])[: len(boxes)]
    student = student_pass(parts, pixels)
    true_ids = phrase_ids[:, None] if true_ids is None else true_ids
    regions = Regions(pixels, boxes, text, phrase_ids, true_ids, student, parts, model.torch_module.encode_image)
    feats = StepFeatures(image=student.image, text=torch.randn(2, 16, generator=gen), logit_scale=torch.tensor(10.0),
                         caption_ids=torch.arange(2), regions=regions)  # fmt: skip
    objective = build_objectives("cloc", prompter=prompter)["cloc"][1]
    objective.attach_regions(model, parts)
    return model, objective, feats


@pytest.mark.parametrize("true_ids", [None, torch.tensor([[7, 7], [3, 11], [7, 7], [11, 11]])])
def test_loss_equals_the_direct_computation(true_ids):
    """Also when a region's descriptions include the phrase another region drew (region 1 is "11" too)."""
    _, objective, feats = tiny_step(true_ids=true_ids)
    r = feats.regions
    prompter = objective.region_prompter
    loss = objective(feats, DistContext())
    with torch.no_grad():
        embedded = prompter.region(r.student.tokens, r.boxes, r.side, r.parts.head)
        predicted = prompter.ground(r.student.tokens, r.boxes[:, 0], r.text)
    target = torch.stack([(r.boxes[:, 1] + r.boxes[:, 3]) / 2, (r.boxes[:, 2] + r.boxes[:, 4]) / 2,
                          r.boxes[:, 3] - r.boxes[:, 1], r.boxes[:, 4] - r.boxes[:, 2]], dim=1) / 32  # fmt: skip
    expected = direct_loss(embedded, r.text.detach(), r.phrase_ids.tolist(), 10.0, predicted, target, r.true_ids.tolist())
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_with_the_masked_class_prompter_the_loss_is_the_region_infonce_of_box_class_tokens():
    model, objective, feats = tiny_step(prompter="masked-class", true_ids=torch.tensor([[7, 7], [3, 11], [7, 7], [11, 11]]))
    r = feats.regions
    loss = objective(feats, DistContext())
    with torch.no_grad():
        embedded = box_class_tokens(r.parts, r.pixels, r.boxes)
    assert float(loss) == pytest.approx(direct_loss(embedded, r.text.detach(), r.phrase_ids.tolist(), 10.0, true=r.true_ids.tolist()), rel=1e-5)
    loss.backward()
    visual = model.torch_module.visual
    for param in (visual.conv1.weight, visual.transformer.resblocks[0].attn.in_proj_weight, visual.proj):
        assert param.grad is not None and float(param.grad.abs().sum()) > 0
    assert list(objective.parameters()) == []  # the tower learns; the prompter has nothing to learn


def test_the_prompt_row_is_row_zero_of_the_full_block():
    torch.manual_seed(0)
    p = Prompter(width=16, heads=2, embed_dim=8)
    prompt, tokens, bias = torch.randn(3, 16), torch.randn(3, 5, 16), torch.randn(3, 6)
    seq = torch.cat([prompt[:, None], tokens], dim=1)  # a standard pre-norm block over every position
    n = p.ln_1(seq)
    q, k, v = (F.linear(n, w, b) for w, b in zip(p.attn.in_proj_weight.chunk(3), p.attn.in_proj_bias.chunk(3)))
    q, k, v = (t.reshape(3, 6, 2, 8).transpose(1, 2) for t in (q, k, v))  # 2 heads of 8
    logits = q @ k.transpose(-1, -2) / math.sqrt(8) + bias[:, None, None, :]  # the prompt's bias on every row (row 0 is read)
    x = seq + p.attn.out_proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(3, 6, 16))
    full = x + p.mlp(p.ln_2(x))
    assert torch.allclose(p.attend(prompt, tokens, bias), full[:, 0], atol=1e-5)


def test_box_bias_favours_the_cells_a_box_covers():
    bias = box_bias(torch.tensor([[0.0, 0.0, 0.5, 0.25]]), cells=4)  # the top half of cell 0 on a 2x2 grid
    assert torch.allclose(bias, torch.log(torch.tensor([[1.0, 1.0, 0.5 + FLOOR, FLOOR, FLOOR, FLOOR]])), atol=1e-6)


def test_fourier_features_of_a_box():
    f = fourier_features(torch.tensor([[0.25, 0.5, 0.75, 1.0]]), frequencies=2)
    assert f.shape == (1, 4 * 5)
    assert torch.allclose(f[0, :4], torch.tensor([0.25, 0.5, 0.75, 1.0]))
    assert f[0, 4] == pytest.approx(math.sin(math.pi * 0.25)) and f[0, 5] == pytest.approx(math.sin(2 * math.pi * 0.25))


def test_prompter_shape_and_gradient_into_prompter_and_tower():
    model, objective, feats = tiny_step()
    r = feats.regions
    assert objective.region_prompter.region(r.student.tokens, r.boxes, r.side, r.parts.head).shape == (4, model.embed_dim)
    objective(feats, DistContext()).backward()
    prompter = objective.region_prompter
    for name in ("box_prompt", "text_prompt", "attn", "mlp", "box_head"):
        grads = [p.grad for p in getattr(prompter, name).parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0, name
    visual = model.torch_module.visual
    for param in (visual.conv1.weight, visual.transformer.resblocks[-1].mlp.c_fc.weight, visual.proj):
        assert param.grad is not None and float(param.grad.abs().sum()) > 0


def test_two_boxes_of_one_image_embed_differently():
    _, objective, feats = tiny_step()
    r = feats.regions
    boxes = torch.tensor([[0, 0, 0, 16, 16], [0, 16, 16, 32, 32.0]])
    with torch.no_grad():
        a, b = F.normalize(objective.region_prompter.region(r.student.tokens, boxes, r.side, r.parts.head), dim=-1)
    assert float(a @ b) < 0.99


def test_a_batch_without_regions_gives_zero():
    _, objective, feats = tiny_step(boxes=torch.zeros(0, 5))
    loss = objective(feats, DistContext())
    assert float(loss) == 0.0
    loss.backward()


def shapes_config(out, **kw):
    base = {"model": "cliplab:shapes-vit", "data": "synthetic:200", "objectives": "clip,cloc", "steps": 3, "batch_size": 8,
            "out": str(out), "evaluate": "none", "progress": False, "workers": 0, "device": "cpu", "ckpt_every": 0}  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_trained_prompter_is_saved_loaded_and_used_by_encode_regions(tmp_path):
    trainer = Trainer(shapes_config(tmp_path / "run"))
    try:
        result = trainer.run()
        prompter = trainer.objectives["cloc"][1].region_prompter.eval()
        group = trainer.optimizer.param_groups[-1]  # the prompter learns at lr_scale x the run's rate
        assert group["initial_lr"] == pytest.approx(30 * trainer.config.lr) and {id(p) for p in prompter.parameters()} == {id(p) for p in group["params"]}
    finally:
        trainer.close()
    assert result.steps_run == 3 and all(math.isfinite(x) for x in result.losses)
    manifest = json.loads((tmp_path / "run" / "cliplab_model.json").read_text())
    assert manifest["prompter"] == "prompter.safetensors"
    model = load_model(str(tmp_path / "run"), device="cpu")
    assert model.region_prompter is not None
    records = [synthetic.scene(i, seed=5, split="test") for i in range(3)]
    boxes = [[list(r.box) for r in scene_regions(rec)] for rec in records]
    got = model.encode_regions([r.image for r in records], boxes)
    assert got.shape == (sum(map(len, boxes)), model.embed_dim)
    with torch.no_grad():
        pixels = model.preprocess_batch([r.image for r in records])
        rows = torch.tensor([[i, *b] for i, bs in enumerate(boxes) for b in bs], dtype=torch.float32)  # 64-px scenes: input pixels
        want = F.normalize(prompter.embed(model, vision_parts(model), pixels, rows), dim=-1).numpy()
    assert np.allclose(got, want, atol=1e-5)
    model.region_prompter = None  # without it, boxes pool dense features: another embedding
    assert not np.allclose(model.encode_regions([r.image for r in records], boxes), got, atol=1e-2)


def test_a_masked_class_run_names_its_prompter_and_the_folder_loads_with_it(tmp_path):
    result = train(shapes_config(tmp_path / "run", prompter="masked-class", steps=2))
    assert result.steps_run == 2 and all(math.isfinite(x) for x in result.losses)
    manifest = json.loads((tmp_path / "run" / "cliplab_model.json").read_text())
    assert manifest["prompter"] == "masked-class" and not (tmp_path / "run" / "prompter.safetensors").exists()
    assert isinstance(load_model(str(tmp_path / "run"), device="cpu").region_prompter, MaskedClassPrompter)
    again = train(shapes_config(tmp_path / "again", model=str(tmp_path / "run"), objectives="clip", steps=1))  # no cloc: the readout stays
    assert again.steps_run == 1 and json.loads((tmp_path / "again" / "cliplab_model.json").read_text())["prompter"] == "masked-class"


def test_an_unknown_prompter_is_refused_in_one_line():
    from cliplab.errors import InputError

    with pytest.raises(InputError, match="unknown prompter 'box'; use block or masked-class"):
        TrainConfig(prompter="box").check()


def test_an_evaluation_during_the_run_embeds_regions_with_the_prompter_being_trained(tmp_path):
    seen = []

    def evaluate(model):
        seen.append((model.region_prompter, None if model.region_prompter is None else model.region_prompter.training))
        return {}

    trainer = Trainer(shapes_config(tmp_path / "run", steps=2, eval_every=1), evaluate=evaluate)
    try:
        trainer.run()
        prompter = trainer.objectives["cloc"][1].region_prompter
        assert seen == [(prompter, False)] * 3 and prompter.training  # in eval mode while evaluated, back to training after
        assert getattr(trainer.model, "region_prompter", None) is None  # the model is given back as it was
    finally:
        trainer.close()


def test_resume_with_cloc_equals_an_uninterrupted_run(tmp_path):
    settings = {"data": "synthetic:64:5", "objectives": "clip,cloc", "steps": 4, "batch_size": 8, "lr": 1e-3, "warmup": 1,
                "eval_n": 0, "log_every": 1, "workers": 0, "progress": False, "device": "cpu", "ckpt_every": 0}  # fmt: skip
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **settings), model=micro_model(MICRO_VIT_CFG))
    cfg = TrainConfig(out=str(tmp_path / "resumed"), **settings)
    part = train(cfg, model=micro_model(MICRO_VIT_CFG), stop_after=2)
    rest = train(cfg, model=micro_model(MICRO_VIT_CFG), resume=True)
    assert part.losses + rest.losses == straight.losses  # exactly equal floats
    from safetensors.torch import load_file

    for name in ("model.safetensors", "prompter.safetensors"):
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
