"""The multilingual objectives against direct computations: textdistill (Multilingual-CLIP / DC-CLIP
stage 2), fmdistill's feature-map term (DC-CLIP stage 1) and selfdist (RS-M-CLIP); and short trainer
runs with translated captions."""

import math

import pytest
import torch

from cliplab.errors import InputError
from cliplab.models.vision_parts import FeatureMaps, feature_map_source
from cliplab.train import TrainConfig, train
from cliplab.train.objectives import build_objectives
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.fmdistill import FeatureMapDistillObjective, feature_map_loss
from cliplab.train.objectives.selfdist import SelfDistillObjective
from cliplab.train.objectives.text_distill import TextDistillObjective, text_distill_loss

from .conftest import MICRO_VIT_CFG, micro_model


def _unit(row):
    n = math.sqrt(sum(float(x) ** 2 for x in row))
    return [float(x) / n for x in row]


def _by_hand(student, teacher, loss, beta=1.0):
    """The three losses with plain loops over rows and coordinates."""
    rows = []
    for s, t in zip(student.tolist(), teacher.tolist()):
        s, t = _unit(s), _unit(t)
        if loss == "cosine":
            rows.append(1 - sum(a * b for a, b in zip(s, t)))
            continue
        d, scale = len(t), math.sqrt(len(t))
        diffs = [scale * (a - b) for a, b in zip(s, t)]
        if loss == "mse":
            rows.append(sum(x * x for x in diffs) / d)
        else:
            rows.append(sum(0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta for x in diffs) / d)
    return sum(rows) / len(rows)


@pytest.mark.parametrize("loss", ["cosine", "mse", "smoothl1"])
def test_text_distill_losses(loss):
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert float(text_distill_loss(student, teacher, loss, beta=0.5)) == pytest.approx(_by_hand(student, teacher, loss, beta=0.5), rel=1e-5)
    assert float(text_distill_loss(teacher * 3, teacher, loss)) == pytest.approx(0.0, abs=1e-6)  # the scale of the student does not matter


def test_text_distill_objective_projects_and_reads_teacher_text():
    g = torch.Generator().manual_seed(2)
    obj = TextDistillObjective(student_dim=6, teacher_dim=4, loss="mse")
    text, teacher = torch.randn(3, 6, generator=g), torch.randn(3, 4, generator=g)
    feats = StepFeatures(image=torch.randn(3, 6), text=text, logit_scale=torch.tensor(10.0), caption_ids=torch.arange(3), teacher_text=teacher)
    expected = _by_hand(text @ obj.project.weight.detach().T, teacher, "mse")
    assert float(obj(feats, DistContext()).detach()) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(RuntimeError, match="teacher's text"):
        obj(StepFeatures(image=text, text=text, logit_scale=torch.tensor(1.0), caption_ids=torch.arange(3)), DistContext())
    with pytest.raises(InputError, match="unknown text distillation loss 'l3'"):
        TextDistillObjective(loss="l3")
    built = build_objectives("clip,textdistill:0.5", 6, 6, distill_loss="smoothl1")
    assert built["textdistill"][0] == 0.5 and built["textdistill"][1].loss == "smoothl1"


def test_feature_map_loss_by_hand():
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    adapter = torch.nn.Conv2d(3, 4, 1)
    w, b = adapter.weight.detach()[:, :, 0, 0], adapter.bias.detach()
    mapped = torch.einsum("oc,bchw->bohw", w, student) + b[None, :, None, None]  # the 1x1 adapter as a channel map
    up = torch.nn.functional.interpolate(mapped, size=(4, 4), mode="bilinear", align_corners=False)
    x = (up - teacher).abs()
    expected = torch.where(x < 1.0, 0.5 * x**2, x - 0.5).mean()
    assert float(feature_map_loss(student, teacher, adapter)) == pytest.approx(float(expected), rel=1e-5)

    obj = FeatureMapDistillObjective(student_dim=5, teacher_dim=5, map_weight=2.0)
    obj.attach_maps(3, 4)
    image, teacher_image = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    feats = StepFeatures(image=image, text=image, logit_scale=torch.tensor(1.0), caption_ids=torch.arange(2), teacher_image=teacher_image,
                         extras={"student_map": student, "teacher_map": teacher})  # fmt: skip
    cosine = 1 - torch.nn.functional.cosine_similarity(image, teacher_image).mean()
    expected = float(cosine) + 2.0 * float(feature_map_loss(student, teacher, obj.adapter))
    assert float(obj(feats, DistContext()).detach()) == pytest.approx(expected, rel=1e-5)


def test_feature_maps_of_both_tower_kinds():
    resnet, vit = micro_model(), micro_model(MICRO_VIT_CFG)
    for model, channels, side in ((resnet, None, None), (vit, 16, 2)):
        maps = FeatureMaps(model.torch_module.visual)
        with torch.no_grad():
            model.torch_module.encode_image(torch.zeros(3, 3, 32, 32))
        got = maps.take()
        maps.remove()
        assert got.ndim == 4 and got.shape[0] == 3
        if channels:
            assert got.shape[1:] == (channels, side, side)
    module, _ = feature_map_source(resnet.torch_module.visual)
    assert module is resnet.torch_module.visual.layer4
    with pytest.raises(InputError, match="ResNet or ViT"):
        feature_map_source(torch.nn.Linear(2, 2))


def test_selfdist_is_dino_with_rs_m_clip_settings():
    obj = SelfDistillObjective(embed_dim=8)
    assert obj.out_dim == 256 and obj.n_local == 4 and obj.local_scale == (0.1, 0.4) and obj.global_scale == (0.4, 1.0)
    assert (obj.student_temp, obj.teacher_temp) == (0.1, 0.04)
    clip = torch.nn.Module()
    clip.visual = torch.nn.Linear(3, 3)
    obj.attach(clip, 8)
    before = [p.detach().clone() for p in obj.teacher_tower.parameters()]
    with torch.no_grad():
        for p in clip.visual.parameters():
            p.add_(1.0)
    obj.update_teacher(clip, progress=0.9)  # fixed momentum: progress does not matter
    for b, t, s in zip(before, obj.teacher_tower.parameters(), clip.visual.parameters()):
        assert torch.allclose(t, 0.996 * b + 0.004 * s)
    assert "selfdist" in build_objectives("clip,selfdist", 8)


def test_trainer_with_translated_captions_and_textdistill(tmp_path):
    """``--languages`` draws a language per caption; textdistill's teacher reads the English parallels."""
    from cliplab.train.batches import BatchPlan, StepBatches
    from cliplab.train.pairs import SyntheticPairs

    model = micro_model()
    plan = BatchPlan(8, seed=1, languages=("de", "zh", "en"))
    batch = StepBatches(SyntheticPairs(40, 1), model.preprocess, model.tokenize, plan, 0, 1).make_batch(0)
    assert len(batch["teacher_captions"]) == 8 and any(c != e for c, e in zip(batch["captions"], batch["teacher_captions"]))
    assert all(e.isascii() for e in batch["teacher_captions"]) and not all(c.isascii() for c in batch["captions"])
    cfg = TrainConfig(data="synthetic:40:1", objectives="clip,textdistill", teacher="cliplab:shapes-tiny", languages="de,zh,en", steps=2,
                      batch_size=8, warmup=1, out=str(tmp_path / "run"), evaluate="none", progress=False, device="cpu", workers=0)  # fmt: skip
    result = train(cfg, model=model)
    assert result.steps_run == 2 and all(math.isfinite(x) for x in result.losses)
    with pytest.raises(InputError, match="unknown xx"):
        TrainConfig(languages="de,xx").check()


def test_trainer_runs_fmdistill(tmp_path):
    cfg = TrainConfig(data="synthetic:40:1", objectives="clip,fmdistill", teacher="cliplab:shapes-tiny", steps=2, batch_size=4, warmup=1,
                      out=str(tmp_path / "run"), evaluate="none", progress=False, device="cpu", workers=0)  # fmt: skip
    result = train(cfg, model=micro_model())
    assert result.steps_run == 2 and all(math.isfinite(x) for x in result.losses)
    with pytest.raises(InputError, match="fmdistill"):
        train(TrainConfig(**{**cfg.__dict__, "teacher": None, "out": str(tmp_path / "run2")}), model=micro_model())


def test_languages_need_synthetic_scenes(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,caption\na.png,a red star\n")
    cfg = TrainConfig(data=str(tmp_path / "m.csv"), languages="de", steps=1, batch_size=2, out=str(tmp_path / "run"), evaluate="none", progress=False)
    with pytest.raises(InputError, match="--languages applies to synthetic scenes"):
        train(cfg, model=micro_model())
