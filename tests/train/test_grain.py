"""GRAIN's region terms against a direct computation, and a region objective's run: resume and data parallel."""

import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.dense.box_pool import pool_boxes
from cliplab.train import TrainConfig, train
from cliplab.train.objectives import build_objectives
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.grain import box_cells, grounding_loss
from cliplab.train.region_features import Regions, StudentDense

from .conftest import MICRO_VIT_CFG, micro_model


def _cells_direct(box, h, w, patch):
    """Cells (row-major) the box covers at least a quarter of, else the one it covers most."""
    shares = []
    for i in range(h):
        for j in range(w):
            dy = max(0.0, min(box[3], (i + 1) * patch) - max(box[1], i * patch))
            dx = max(0.0, min(box[2], (j + 1) * patch) - max(box[0], j * patch))
            shares.append(dx * dy / patch**2)
    inside = [s >= 0.25 for s in shares]
    return inside if any(inside) else [k == max(range(len(shares)), key=shares.__getitem__) for k in range(len(shares))]


def _regions(seed=0, b=3, r=5, e=6, h=4, w=4, patch=8.0):
    gen = torch.Generator().manual_seed(seed)
    dense = F.normalize(torch.randn(b, e, h, w, generator=gen), dim=1)
    x0 = torch.rand(r, generator=gen) * 24
    y0 = torch.rand(r, generator=gen) * 24
    size = 2 + torch.rand(r, 2, generator=gen) * 14
    boxes = torch.stack([torch.randint(0, b, (r,), generator=gen).float(), x0, y0, x0 + size[:, 0], y0 + size[:, 1]], 1)
    text = torch.randn(r, e, generator=gen)
    return dense, boxes, text


def test_box_cells_match_a_direct_count():
    _, boxes, _ = _regions()
    boxes = torch.cat([boxes, torch.tensor([[0, 9.0, 9.0, 10.0, 10.0]])])  # a box inside one cell, a sliver of it
    got = box_cells(boxes[:, 1:], (4, 4), 8.0)
    for k, box in enumerate(boxes[:, 1:].tolist()):
        assert got[k].tolist() == _cells_direct(box, 4, 4, 8.0)


def test_grounding_loss_matches_a_direct_computation():
    dense, boxes, text = _regions()
    text = F.normalize(text, dim=-1)
    scale = torch.tensor(7.0)
    got = grounding_loss(dense, boxes, text, scale, 8.0)
    for k, box in enumerate(boxes.tolist()):
        image = int(box[0])
        cells = _cells_direct(box[1:], 4, 4, 8.0)
        sims = [float(scale * dense[image, :, n // 4, n % 4] @ text[k]) for n in range(16)]
        p = [math.exp(s) for s in sims]
        want = -math.log(sum(q for q, inside in zip(p, cells) if inside) / sum(p))
        assert abs(float(got[k]) - want) < 1e-5


def _features(dense, boxes, text, phrase_ids, scale=7.0, true_ids=None):
    b = dense.shape[0]
    student = StudentDense(image=torch.zeros(b, 6), block_inputs=[], tokens=None, dense=dense, grid=tuple(dense.shape[2:]))
    parts = type("Parts", (), {"patch_size": 8})()
    true_ids = phrase_ids[:, None] if true_ids is None else true_ids
    regions = Regions(pixels=torch.zeros(b, 3, 32, 32), boxes=boxes, text=text, phrase_ids=phrase_ids, true_ids=true_ids, student=student,
                      parts=parts, encode_image=None)  # fmt: skip
    return StepFeatures(image=torch.zeros(b, 6), text=torch.zeros(b, 6), logit_scale=torch.tensor(scale),
                        caption_ids=torch.arange(b), regions=regions)  # fmt: skip


def test_grain_is_grounding_plus_multi_positive_region_description_contrast():
    dense, boxes, text = _regions()
    ids = torch.tensor([0, 1, 0, 2, 3])  # regions 0 and 2 drew the same phrase: positives of each other
    true = torch.tensor([[0, 0], [1, 3], [0, 0], [2, 2], [3, 3]])  # region 1 is also described by the phrase region 4 drew
    [(weight, objective)] = build_objectives("grain").values()
    got = objective(_features(dense, boxes, text, ids, true_ids=true), DistContext())
    t = F.normalize(text, dim=-1)
    ground = float(grounding_loss(dense, boxes, t, torch.tensor(7.0), 8.0).mean())
    align = 0.0
    for k, box in enumerate(boxes.tolist()):
        cells = torch.zeros(16)
        for i in range(4):
            for j in range(4):
                dy = max(0.0, min(box[4], (i + 1) * 8) - max(box[2], i * 8))
                dx = max(0.0, min(box[3], (j + 1) * 8) - max(box[1], j * 8))
                cells[i * 4 + j] = dx * dy
        q = F.normalize((dense[int(box[0])].flatten(1) * (cells / cells.sum())).sum(1), dim=0)
        logp = torch.log_softmax(7.0 * t @ q, dim=0)
        positives = [m for m in range(5) if ids[m] in true[k]]
        align -= float(sum(logp[m] for m in positives)) / len(positives)
    assert weight == 1.0 and abs(float(got) - (ground + align / 5)) < 1e-5


def test_shape_swapped_phrases_are_extra_negative_columns_of_their_region_only():
    dense, boxes, text = _regions()
    ids = torch.arange(5)
    gen = torch.Generator().manual_seed(1)
    negatives, valid = torch.randn(5, 3, 6, generator=gen), torch.tensor([[1, 1, 0]] * 5, dtype=torch.bool)
    [(_, objective)] = build_objectives("grain").values()
    feats = _features(dense, boxes, text, ids)
    feats.regions.negatives, feats.regions.negatives_valid = negatives, valid
    got = objective(feats, DistContext())
    t, n = F.normalize(text, dim=-1), F.normalize(negatives, dim=-1)
    q = F.normalize(torch.stack([pool_boxes(dense, boxes[k : k + 1], 8.0)[0] for k in range(5)]), dim=-1)
    align = 0.0
    for k in range(5):
        row = torch.cat([7.0 * t @ q[k], 7.0 * n[k, :2] @ q[k]])  # the batch's phrases, then its two valid swaps
        align -= float(torch.log_softmax(row, 0)[k])
    ground = float(grounding_loss(dense, boxes, t, torch.tensor(7.0), 8.0).mean())
    assert abs(float(got) - (ground + align / 5)) < 1e-5


def test_grain_without_regions_is_a_zero_that_keeps_the_graph():
    dense, _, text = _regions()
    dense.requires_grad_(True)
    [(_, objective)] = build_objectives("grain").values()
    loss = objective(_features(dense, torch.zeros(0, 5), text[:0], torch.zeros(0, dtype=torch.long)), DistContext())
    loss.backward()
    assert loss.detach().item() == 0.0 and dense.grad is not None


def _config(tmp_path, name, **kw):
    base = dict(data="synthetic:32:3", objectives="clip,grain", steps=4, batch_size=8, lr=1e-3, warmup=1, out=str(tmp_path / name),
                ckpt_every=2, eval_n=0, log_every=1, workers=0, progress=False, device="cpu")  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("lock_text", [False, True])  # a locked text tower encodes each phrase once, alone
def test_a_region_run_resumes_bit_for_bit(tmp_path, lock_text):
    straight = train(_config(tmp_path, "straight", lock_text=lock_text), model=micro_model(MICRO_VIT_CFG))
    part = train(_config(tmp_path, "resumed", lock_text=lock_text), model=micro_model(MICRO_VIT_CFG), stop_after=2)
    rest = train(_config(tmp_path, "resumed", lock_text=lock_text), model=micro_model(MICRO_VIT_CFG), resume=True)
    assert part.losses + rest.losses == straight.losses
    assert all(math.isfinite(x) for x in straight.losses)


def test_region_objectives_refuse_accumulation_and_a_resnet(tmp_path):
    from cliplab.errors import InputError

    with pytest.raises(InputError, match="without --accum"):
        train(_config(tmp_path, "accum", accum=2), model=micro_model(MICRO_VIT_CFG))
    with pytest.raises(InputError, match="ViT"):
        train(_config(tmp_path, "resnet"), model=micro_model())
