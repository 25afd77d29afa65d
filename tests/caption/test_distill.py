"""LightCap's ensemble distillation: targets and loss against a hand loop over tokens, ensemble heads,
ablated networks, and a distilled student trained, saved and loaded on the tiny random test CLIP."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from cliplab.caption import Captioner
from cliplab.caption.distill import Teachers, distillation_loss, ensemble_targets
from cliplab.caption.network import CaptionNet, combine_heads
from cliplab.caption.vocab import CaptionVocab
from cliplab.data import synthetic
from cliplab.errors import InputError


def softmax(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def hand_kd(student: torch.Tensor, teachers: torch.Tensor, mask: torch.Tensor, t: float, per_head: bool) -> float:
    """T^2 x mean over valid tokens and heads of sum_v q_v log(q_v / p_v), one token at a time in plain Python."""
    B, L, H, _ = student.shape
    terms = []
    for b in range(B):
        for i in range(L):
            if not mask[b, i]:
                continue
            for h in range(H):
                if per_head:
                    q = softmax(teachers[h, b, i].tolist(), t)
                else:
                    qs = [softmax(teachers[m, b, i].tolist(), t) for m in range(teachers.shape[0])]
                    q = [sum(col) / len(qs) for col in zip(*qs)]
                p = softmax(student[b, i, h].tolist(), t)
                terms.append(sum(qv * math.log(qv / pv) for qv, pv in zip(q, p) if qv > 0))
    return t * t * sum(terms) / len(terms)


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("t", [1.0, 2.5])
def test_distillation_loss_matches_a_hand_loop(heads, t):
    g = torch.Generator().manual_seed(heads)
    teachers = 3 * torch.randn(3, 2, 4, 5, generator=g, dtype=torch.float64)
    student = 3 * torch.randn(2, 4, heads, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    got = distillation_loss(student, ensemble_targets(teachers, heads, t), mask, t)
    assert float(got) == pytest.approx(hand_kd(student, teachers, mask, t, per_head=heads > 1), rel=1e-5)


def test_targets_average_the_teachers_or_give_each_head_its_own():
    teachers = torch.randn(2, 3, 4, 6)
    avg = ensemble_targets(teachers, 1, 2.0)
    assert avg.shape == (3, 4, 1, 6)
    torch.testing.assert_close(avg[..., 0, :], (torch.softmax(teachers[0] / 2, -1) + torch.softmax(teachers[1] / 2, -1)) / 2)
    per = ensemble_targets(teachers, 2, 1.0)
    torch.testing.assert_close(per[:, :, 1], torch.softmax(teachers[1], -1))
    with pytest.raises(InputError, match="3 ensemble heads for 2 teachers"):
        ensemble_targets(teachers, 3, 1.0)


def test_loss_is_zero_on_the_teacher_and_positive_elsewhere():
    teachers = torch.randn(1, 2, 3, 7)
    mask = torch.ones(2, 3, dtype=torch.bool)
    same = distillation_loss(teachers[0].unsqueeze(-2), ensemble_targets(teachers, 1, 3.0), mask, 3.0)
    assert abs(float(same)) < 1e-6
    assert float(distillation_loss(torch.zeros(2, 3, 1, 7), ensemble_targets(teachers, 1, 3.0), mask, 3.0)) > 0


def test_heads_combine_as_the_log_of_their_averaged_distributions():
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(combine_heads(z).exp(), torch.softmax(z, -1).mean(-2))
    torch.testing.assert_close(combine_heads(z[:, :, :1]), z[:, :, 0])


def net(**kw) -> CaptionNet:
    return CaptionNet(torch.randn(10, 16), 16, 24, 4, 12, k=3, width=32, heads=2, layers=1, max_length=8, **kw)


def test_ablated_networks_drop_their_modules():
    full, no_mod, no_concepts = net(), net(use_modulator=False), net(use_concepts=False)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(full) - count(no_mod) == 16 * 24 + 24  # the modulator's linear map
    assert no_concepts.concepts is None and no_concepts.modulator is None and count(no_concepts) < count(no_mod)
    image, grid, tokens = torch.randn(2, 16), torch.randn(2, 4, 24), torch.randint(0, 12, (2, 5))
    for m, n_memory in ((full, 4 + 1 + 3), (no_mod, 4 + 1 + 3), (no_concepts, 4 + 1)):
        memory, logits = m.memory(image, grid)
        assert memory.shape == (2, n_memory, 32) and (logits is None) == (m is no_concepts)
        assert m(memory, tokens).shape == (2, 5, 12)
    # without the modulator the grid tokens enter unscaled (the memory's LayerNorm works token by token)
    with torch.no_grad():
        torch.testing.assert_close(no_mod.memory(image, grid)[0][:, :4], no_mod.memory_norm(no_mod.grid_proj(grid) + no_mod.grid_pos))


@pytest.fixture(scope="module")
def data(tiny_model):
    scenes = synthetic.generate(16, seed=4, split="train")
    probe = Captioner(tiny_model)
    return probe.features([r.image for r in scenes]).X, [r.caption for r in scenes]


@pytest.fixture(scope="module")
def teachers(tiny_model, data):
    X, captions = data
    return [Captioner(tiny_model, steps=3, batch_size=4, width=32, heads=2, layers=2, k=4, seed=s).fit_features(X, captions) for s in (0, 1)]


@pytest.mark.parametrize("heads", [1, 2])
def test_a_distilled_student_trains_saves_and_loads(tiny_model, data, teachers, heads, tmp_path):
    X, captions = data
    student = Captioner(tiny_model, steps=3, batch_size=4, width=16, heads=2, k=4, ensemble_heads=heads, seed=0)
    student.fit_features(X, captions, teachers=teachers)
    assert student.vocab_.model_ids == teachers[0].vocab_.model_ids
    assert "distill_loss" in student.history_[-1] and student.history_[-1]["distill_loss"] > 0
    assert student.net_.head.out_features == heads * len(student.vocab_)
    loaded = Captioner.load(student.save(tmp_path / "student"), model=tiny_model)
    assert loaded.ensemble_heads == heads and loaded.caption_features(X[:3]) == student.caption_features(X[:3])
    assert len(loaded.caption_features(X[:2], precision="int8")) == 2  # the heads quantise like any Linear layer


def test_distillation_rejects_mismatched_teachers_and_heads(tiny_model, data, teachers):
    X, captions = data
    other = copy.copy(teachers[1])
    other.vocab_ = CaptionVocab(list(reversed(teachers[1].vocab_.model_ids)))
    with pytest.raises(InputError, match="different caption vocabularies"):
        Captioner(tiny_model, steps=1, width=16, heads=2).fit_features(X, captions, teachers=[teachers[0], other])
    with pytest.raises(InputError, match="3 ensemble heads for 2 teachers"):
        Captioner(tiny_model, steps=1, width=16, heads=2, ensemble_heads=3).fit_features(X, captions, teachers=teachers)
    with pytest.raises(InputError, match="need teachers"):
        Captioner(tiny_model, steps=1, width=16, heads=2, ensemble_heads=2).fit_features(X, captions)
    with pytest.raises(InputError, match="not fitted"):
        Teachers([Captioner(tiny_model)], teachers[0].feature_model().name)


def test_ablated_students_train_and_load(tiny_model, data, tmp_path):
    X, captions = data
    for i, kw in enumerate(({"use_concepts": False}, {"use_modulator": False})):
        cap = Captioner(tiny_model, steps=2, batch_size=4, width=16, heads=2, k=4, **kw).fit_features(X, captions)
        loaded = Captioner.load(cap.save(tmp_path / str(i)), model=tiny_model)
        assert loaded.caption_features(X[:2]) == cap.caption_features(X[:2])
        if not kw.get("use_concepts", True):
            assert cap.history_[-1]["concept_loss"] == 0.0
