"""Each objective against a direct formula on tiny tensors, and against open_clip where they overlap."""

import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.errors import InputError
from cliplab.train.objectives import build_objectives, parse_objectives
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.clip import ClipObjective
from cliplab.train.objectives.distill import DistillObjective
from cliplab.train.objectives.hardneg import HardNegativeObjective
from cliplab.train.objectives.infoloob import (
    CloobObjective,
    InfoLoobObjective,
    hopfield,
)
from cliplab.train.objectives.m2mix import M2MixObjective, slerp
from cliplab.train.objectives.pcm import PrimaryComponentObjective, principal_components
from cliplab.train.objectives.refine import HyCDObjective, RaFAObjective
from cliplab.train.objectives.siglip import SigLipObjective

CTX = DistContext()
B, D = 6, 5


def feats(seed=0, ids=None, **extra) -> StepFeatures:
    g = torch.Generator().manual_seed(seed)
    image, text = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    ids = torch.arange(B) if ids is None else torch.tensor(ids)
    return StepFeatures(image=image, text=text, logit_scale=torch.tensor(7.0), caption_ids=ids, **extra)


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_clip_equals_open_clip_cliploss():
    from open_clip.loss import ClipLoss

    f = feats()
    expected = ClipLoss()(unit(f.image), unit(f.text), f.logit_scale)
    assert torch.allclose(ClipObjective()(f, CTX), expected, atol=1e-6)


def test_clip_counts_repeated_captions_as_positives():
    f = feats(ids=[0, 0, 1, 2, 3, 4])
    x, y = unit(f.image), unit(f.text)
    logits = 7.0 * x @ y.T
    total = 0.0
    for mat in (logits, logits.T):
        for i in range(B):
            positives = [j for j in range(B) if f.caption_ids[j] == f.caption_ids[i]]
            total += -sum(torch.log_softmax(mat[i], 0)[j] for j in positives) / len(positives) / B
    assert torch.allclose(ClipObjective()(f, CTX), total / 2, atol=1e-6)


def test_siglip_equals_open_clip_and_the_paper_formula():
    from open_clip.loss import SigLipLoss

    f = feats(logit_bias=torch.tensor(-2.0))
    x, y = unit(f.image), unit(f.text)
    got = SigLipObjective()(f, CTX)
    assert torch.allclose(got, SigLipLoss()(x, y, f.logit_scale, f.logit_bias), atol=1e-6)
    z = 2 * torch.eye(B) - 1  # +1 on matching pairs, -1 elsewhere (Zhai et al. 2023, Alg. 1)
    direct = -F.logsigmoid(z * (7.0 * x @ y.T - 2.0)).sum() / B
    assert torch.allclose(got, direct, atol=1e-6)


def test_siglip_brings_its_own_bias_for_a_model_without_one():
    objective = SigLipObjective()
    f = feats()
    loss = objective(f, CTX)
    loss.backward()
    assert objective.bias.grad is not None and float(objective.bias) == -10.0


def loob_direct(a, b, inv_tau):
    total_pos, total_neg = 0.0, 0.0
    for i in range(len(a)):
        total_pos += inv_tau * (a[i] @ b[i])
        total_neg += torch.logsumexp(torch.stack([inv_tau * (a[i] @ b[j]) for j in range(len(a)) if j != i]), 0)
    return (-total_pos / len(a) + total_neg / len(a)) / inv_tau


def test_infoloob_matches_the_leave_one_out_formula():
    f = feats()
    x, y = unit(f.image), unit(f.text)
    expected = loob_direct(x, y, 7.0) + loob_direct(y, x, 7.0)
    assert torch.allclose(InfoLoobObjective()(f, CTX), expected, atol=1e-5)


def test_cloob_uses_hopfield_retrievals():
    f = feats()
    x, y = unit(f.image), unit(f.text)
    hop = lambda s, p: unit(torch.softmax(14.3 * s @ p.T, 1) @ p)
    expected = loob_direct(hop(x, x), hop(y, x), 7.0) + loob_direct(hop(y, y), hop(x, y), 7.0)
    assert torch.allclose(CloobObjective()(f, CTX), expected, atol=1e-5)
    assert torch.allclose(hopfield(x, x, 14.3).norm(dim=1), torch.ones(B), atol=1e-6)


def test_hardneg_adds_negatives_only_to_the_image_side():
    g = torch.Generator().manual_seed(3)
    negatives = torch.randn(B, D, generator=g)
    valid = torch.tensor([True, True, False, True, True, True])
    f = feats(negatives=negatives, negatives_valid=valid)
    x, y, n = unit(f.image), unit(f.text), unit(negatives)
    i2t = 0.0
    for i in range(B):
        cands = [7.0 * x[i] @ y[j] for j in range(B)] + [7.0 * x[i] @ n[k] for k in range(B) if valid[k]]
        i2t += -torch.log_softmax(torch.stack(cands), 0)[i]
    t2i = F.cross_entropy(7.0 * y @ x.T, torch.arange(B))
    assert torch.allclose(HardNegativeObjective()(f, CTX), (i2t / B + t2i) / 2, atol=1e-5)
    # without negatives it is the CLIP loss
    no_neg = feats(negatives=negatives, negatives_valid=torch.zeros(B, dtype=torch.bool))
    assert torch.allclose(HardNegativeObjective()(no_neg, CTX), ClipObjective()(no_neg, CTX), atol=1e-6)


def test_slerp_endpoints_and_unit_norm():
    a, b = unit(torch.randn(4, D)), unit(torch.randn(4, D))
    assert torch.allclose(slerp(a, b, 1.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 0.0), b, atol=1e-5)
    assert torch.allclose(slerp(a, b, 0.3).norm(dim=1), torch.ones(4), atol=1e-5)


def test_m2mix_matches_the_mixed_logits_formula():
    f = feats()
    torch.manual_seed(5)
    got = M2MixObjective()(f, CTX)
    torch.manual_seed(5)
    lam = torch.distributions.Beta(0.5, 0.5).sample()
    x, y = unit(f.image), unit(f.text)
    mixed = slerp(x, y, lam)
    expected = 0.0
    for anchor in (x, y):
        rows = torch.stack([torch.stack([(x[i] @ y[i]) if i == j else anchor[i] @ mixed[j] for j in range(B)]) for i in range(B)])
        expected += F.cross_entropy(7.0 * rows, torch.arange(B))
    assert torch.allclose(got, expected, atol=1e-5)


def test_rafa_is_mse_to_one_shared_gaussian_draw():
    f = feats()
    torch.manual_seed(1)
    got = RaFAObjective()(f, CTX)
    torch.manual_seed(1)
    ref = torch.randn(B, D)
    assert torch.allclose(got, ((f.image - ref) ** 2).mean() + ((f.text - ref) ** 2).mean(), atol=1e-6)


def test_hycd_matches_the_kl_formula_and_vanishes_at_its_target():
    g = torch.Generator().manual_seed(2)
    fi, ft = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    f = feats(frozen_image=fi, frozen_text=ft)
    s, t = f.image @ f.text.T, fi @ ft.T

    def kl(student, teacher):
        q = 0.5 * torch.eye(B) + 0.5 * torch.softmax(teacher, 1)
        return (q * (q.log() - torch.log_softmax(student, 1))).sum() / B

    assert torch.allclose(HyCDObjective()(f, CTX), (kl(s, t) + kl(s.T, t.T)) / 2, atol=1e-5)
    # alpha = 0: the student equal to the teacher has zero loss
    same = feats(frozen_image=None, frozen_text=None)
    same.frozen_image, same.frozen_text = same.image, same.text
    assert float(HyCDObjective(alpha=0.0)(same, CTX)) == pytest.approx(0.0, abs=1e-6)


def test_distill_is_one_minus_cosine_and_projects_other_widths():
    g = torch.Generator().manual_seed(4)
    ti, tt = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    f = feats(teacher_image=ti, teacher_text=tt)
    expected = (1 - F.cosine_similarity(f.image, ti)).mean() + (1 - F.cosine_similarity(f.text, tt)).mean()
    assert torch.allclose(DistillObjective()(f, CTX), expected, atol=1e-6)
    wide = DistillObjective(student_dim=D, teacher_dim=9)
    f9 = feats(teacher_image=torch.randn(B, 9), teacher_text=torch.randn(B, 9))
    wide(f9, CTX).backward()
    assert wide.project.weight.grad is not None


def test_principal_components_reconstruct():
    x = torch.randn(10, 4, dtype=torch.float64)
    assert torch.allclose(principal_components(x, 4), x)  # all components: nothing lost
    one = principal_components(x, 1)
    assert torch.linalg.matrix_rank(one - one.mean(0)) == 1


def test_pcm_is_smoothed_symmetric_ce_on_pca_features():
    g = torch.Generator().manual_seed(6)
    short = torch.randn(B, D, generator=g)
    f = feats(short_text=short)
    coarse = unit(principal_components(unit(f.image), 2))
    logits = 7.0 * coarse @ unit(short).T
    ce = lambda z: F.cross_entropy(z, torch.arange(B), label_smoothing=0.1)
    assert torch.allclose(PrimaryComponentObjective(components=2)(f, CTX), (ce(logits) + ce(logits.T)) / 2, atol=1e-5)


def test_parse_objectives_weights_and_errors():
    assert [(o.name, o.weight) for o in parse_objectives("clip, hardneg:0.5")] == [("clip", 1.0), ("hardneg", 0.5)]
    for bad in ("nope", "clip:x", "clip,clip", " , "):
        with pytest.raises(InputError):
            parse_objectives(bad)
    built = build_objectives("siglip:2,distill", student_dim=4, teacher_dim=8)
    assert built["siglip"][0] == 2.0 and isinstance(built["distill"][1].project, torch.nn.Linear)
    assert math.isclose(built["distill"][0], 1.0)
