"""PACL's patch-aligned contrast against a loop computation, and its gradient reaching the dense tokens."""

import math

import pytest
import torch

from cliplab.train.objectives import build_objectives
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.region_features import Regions, StudentDense


def _features(dense, text, caption_ids, scale=5.0, swaps=None, swaps_valid=None):
    b = dense.shape[0]
    student = StudentDense(image=torch.zeros(b, 6), block_inputs=[], tokens=None, dense=dense, grid=tuple(dense.shape[2:]))
    regions = Regions(pixels=torch.zeros(b, 3, 16, 16), boxes=torch.zeros(0, 5), text=torch.zeros(0, 6),
                      phrase_ids=torch.zeros(0, dtype=torch.long), true_ids=torch.zeros(0, 1, dtype=torch.long), student=student,
                      parts=None, encode_image=None, caption_swaps=swaps, caption_swaps_valid=swaps_valid)  # fmt: skip
    return StepFeatures(image=torch.zeros(b, 6), text=text, logit_scale=torch.tensor(scale), caption_ids=caption_ids, regions=regions)


def _score(tokens, t, scale):
    """s <q, t>: the tokens' softmax(s <d, t>)-weighted mean, normalised, against t."""
    w = [math.exp(scale * float(d @ t)) for d in tokens]
    pooled = sum(wj / sum(w) * d for wj, d in zip(w, tokens))
    return scale * float(pooled @ t) / float(pooled.norm())


def _direct(dense, text, ids, scale, swaps=None, valid=None):
    """The loss with loops: per (image, caption) the softmax-weighted token mean, then two-way InfoNCE;
    an image's valid swapped captions join its image -> captions row as negatives."""
    b = dense.shape[0]
    tokens = [[dense[i, :, y, x] / dense[i, :, y, x].norm() for y in range(dense.shape[2]) for x in range(dense.shape[3])] for i in range(b)]
    t = [v / v.norm() for v in text]
    score = [[_score(tokens[i], t[k], scale) for k in range(b)] for i in range(b)]
    loss = 0.0
    for i in range(b):
        positives = [k for k in range(b) if ids[k] == ids[i]]
        extra = [] if swaps is None else [_score(tokens[i], v / v.norm(), scale) for v, ok in zip(swaps[i], valid[i]) if ok]
        for row in (score[i] + extra, [score[k][i] for k in range(b)]):  # image -> captions (+ its swaps), caption -> images
            log_z = math.log(sum(math.exp(x) for x in row))
            loss -= sum(row[k] - log_z for k in positives) / len(positives)
    return loss / (2 * b)


def test_pacl_equals_the_loop_computation_with_repeated_captions_as_positives():
    gen = torch.Generator().manual_seed(0)
    dense, text = torch.randn(3, 6, 2, 3, generator=gen), torch.randn(3, 6, generator=gen)
    ids = torch.tensor([4, 9, 4])
    [(weight, objective)] = build_objectives("pacl").values()
    got = objective(_features(dense, text, ids), DistContext())
    assert weight == 1.0 and float(got) == pytest.approx(_direct(dense, text, ids.tolist(), 5.0), rel=1e-5)


def test_each_images_swapped_captions_are_extra_negatives_of_its_row_only():
    gen = torch.Generator().manual_seed(2)
    dense, text = torch.randn(3, 6, 2, 2, generator=gen), torch.randn(3, 6, generator=gen)
    swaps, valid = torch.randn(3, 2, 6, generator=gen), torch.tensor([[True, True], [True, False], [False, False]])
    ids = torch.arange(3)
    [(_, objective)] = build_objectives("pacl").values()
    got = objective(_features(dense, text, ids, swaps=swaps, swaps_valid=valid), DistContext())
    assert float(got) == pytest.approx(_direct(dense, text, ids.tolist(), 5.0, swaps, valid.tolist()), rel=1e-5)
    assert float(got) > float(objective(_features(dense, text, ids), DistContext()))  # more negatives, a larger loss


def test_a_batch_carries_each_captions_shape_swaps_held_out_words_included():
    """Region phrases never name a --region-exclude word; a caption's swaps may (captions name every shape)."""
    from cliplab.train.batches import BatchPlan, RegionInput, StepBatches
    from cliplab.train.hard_negatives import swapped_phrases
    from cliplab.train.pairs import SyntheticPairs

    from .conftest import MICRO_VIT_CFG, micro_model

    model = micro_model(MICRO_VIT_CFG)
    plan = BatchPlan(4, seed=0, regions=RegionInput(32, exclude_words=("heart", "crescent"), caption_swaps=True))
    batch = next(iter(StepBatches(SyntheticPairs(8, seed=4), model.preprocess, model.tokenize, plan, 0, 1)))
    swaps = [swapped_phrases(c) for c in batch["captions"]]
    k = max(len(s) for s in swaps)
    assert k == 7 and batch["caption_swaps_valid"].tolist() == [[j < len(s) for j in range(k)] for s in swaps]
    flat = [s[j] if j < len(s) else "" for s in swaps for j in range(k)]
    assert torch.equal(batch["caption_swap_tokens"], model.tokenize(flat))
    assert any("heart" in t and "heart" not in c for c, ts in zip(batch["captions"], swaps) for t in ts)


def test_a_caption_pools_the_tokens_that_show_it_and_the_loss_reaches_every_token():
    from cliplab.train.objectives.pacl import caption_pooled

    gen = torch.Generator().manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(2, 6, generator=gen), dim=-1)
    tokens = torch.nn.functional.normalize(torch.randn(2, 4, 6, generator=gen), dim=-1)
    tokens[0, 3] = text[0]  # image 0's last token shows caption 0
    pooled = caption_pooled(tokens, text.expand(2, 2, 6), torch.tensor(50.0))
    assert torch.allclose(pooled[0, 0], text[0], atol=1e-3)  # caption 0 finds it in image 0
    dense = torch.randn(2, 6, 2, 2, generator=gen, requires_grad=True)
    [(_, objective)] = build_objectives("pacl").values()
    objective(_features(dense, text, torch.tensor([0, 1])), DistContext()).backward()
    assert (dense.grad.flatten(2).norm(dim=1) > 0).all()
