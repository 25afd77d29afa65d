"""The dino objective against a hand-written computation of DINO's loss, centring and EMA teacher,
the multi-crop views, and a short run of the trainer with it."""

import math

import pytest
import torch

from cliplab.errors import InputError
from cliplab.train import TrainConfig, train
from cliplab.train.objectives import build_objectives
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.dino import DinoObjective, dino_loss, multi_crop

from .conftest import MICRO_VIT_CFG, micro_model

B, K = 3, 5


def by_hand(student, teacher, center, ts, tt):
    """Eq. 1 with plain loops: for each teacher crop g and student crop v != g, each row i,
    -sum_k softmax((t - c)/tt)_k * log softmax(s/ts)_k; averaged over rows, then over pairs."""
    pair_losses = []
    for g, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == g:
                continue
            rows = []
            for i in range(t.shape[0]):
                e_t = [math.exp((float(t[i, k]) - float(center[0, k])) / tt) for k in range(K)]
                p_t = [x / sum(e_t) for x in e_t]
                e_s = [math.exp(float(s[i, k]) / ts) for k in range(K)]
                log_p_s = [math.log(x / sum(e_s)) for x in e_s]
                rows.append(-sum(p * q for p, q in zip(p_t, log_p_s)))
            pair_losses.append(sum(rows) / len(rows))
    return sum(pair_losses) / len(pair_losses)


def test_loss_equals_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(B, K, generator=g) for _ in range(4)]  # 2 global + 2 local crops
    teacher = [torch.randn(B, K, generator=g) for _ in range(2)]
    center = torch.randn(1, K, generator=g) * 0.1
    got = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    assert float(got) == pytest.approx(by_hand(student, teacher, center, 0.1, 0.04), rel=1e-5)
    # 2 teacher crops x 3 other student crops = 6 pairs; a crop is never its own target
    same = [teacher[0].clone(), teacher[1].clone()]
    assert float(dino_loss(same, teacher, torch.zeros(1, K))) == pytest.approx(by_hand(same, teacher, torch.zeros(1, K), 0.1, 0.04), rel=1e-5)


def test_the_objective_uses_its_heads_centres_and_updates_the_centre():
    obj = DinoObjective(embed_dim=4, out_dim=K)
    g = torch.Generator().manual_seed(1)
    sv = [torch.randn(B, 4, generator=g) for _ in range(3)]
    tv = [torch.randn(B, 4, generator=g) for _ in range(2)]
    obj.center.copy_(torch.randn(1, K, generator=g))
    before = obj.center.clone()
    feats = StepFeatures(image=sv[0], text=sv[0], logit_scale=torch.tensor(1.0), caption_ids=torch.arange(B),
                         extras={"student_views": sv, "teacher_views": tv})  # fmt: skip
    loss = obj(feats, DistContext())
    with torch.no_grad():
        s_out, t_out = [obj.head(s) for s in sv], [obj.teacher_head(t) for t in tv]
    assert float(loss.detach()) == pytest.approx(by_hand(s_out, t_out, before, 0.1, 0.04), rel=1e-5)
    # c <- 0.9 c + 0.1 mean over the batch of every global crop's teacher output (Eq. 4)
    expected = 0.9 * before + 0.1 * torch.cat(t_out).mean(0, keepdim=True)
    assert torch.allclose(obj.center, expected, atol=1e-6)
    loss.backward()
    assert obj.head.mlp[0].weight.grad is not None and obj.teacher_head.mlp[0].weight.grad is None


def test_teacher_is_an_ema_of_the_student_with_cosine_momentum():
    obj = DinoObjective(embed_dim=4, out_dim=K, teacher_momentum=0.9)
    clip = micro_model(MICRO_VIT_CFG).torch_module
    obj.attach(clip, 16)
    with torch.no_grad():
        for p in clip.visual.parameters():
            p.add_(1.0)
        for p in obj.head.parameters():
            p.add_(1.0)
    t0 = [p.clone() for p in obj.teacher_tower.parameters()]
    s = [p.clone() for p in clip.visual.parameters()]
    obj.update_teacher(clip, progress=0.0)  # lambda = 0.9 at the start
    for a, b, t in zip(t0, s, obj.teacher_tower.parameters()):
        assert torch.allclose(t, 0.9 * a + 0.1 * b, atol=1e-6)
    t1 = [p.clone() for p in obj.teacher_tower.parameters()]
    obj.update_teacher(clip, progress=1.0)  # lambda = 1 at the end: the teacher stays
    assert all(torch.equal(a, b) for a, b in zip(t1, obj.teacher_tower.parameters()))


def test_multi_crop_views_are_seeded_and_full_size():
    pixels = torch.rand(2, 3, 16, 16)
    a = multi_crop(pixels, torch.Generator().manual_seed(3), n_global=2, n_local=3)
    b = multi_crop(pixels, torch.Generator().manual_seed(3), n_global=2, n_local=3)
    assert len(a) == 5 and all(v.shape == pixels.shape for v in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])


def test_build_objectives_knows_dino_and_the_trainer_runs_it(tmp_path):
    assert isinstance(build_objectives("dino", student_dim=8)["dino"][1], DinoObjective)
    cfg = TrainConfig(data="synthetic:64:5", objectives="dino", steps=3, batch_size=4, lr=1e-3, warmup=1, out=str(tmp_path / "run"),
                      ckpt_every=0, eval_n=0, log_every=1, workers=0, progress=False, device="cpu")  # fmt: skip
    model = micro_model(MICRO_VIT_CFG)
    start = [p.clone() for p in model.torch_module.visual.parameters()]
    result = train(cfg, model=model)
    assert len(result.losses) == 3 and all(math.isfinite(x) for x in result.losses)
    assert any(not torch.equal(a, b) for a, b in zip(start, model.torch_module.visual.parameters()))
    with pytest.raises(InputError, match="dino"):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "run2"), "accum": 2}), model=micro_model(MICRO_VIT_CFG))
