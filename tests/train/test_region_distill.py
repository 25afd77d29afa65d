"""The distilling region objectives (farslip, declip, dclip) against direct computations with loops on a
micro ViT (4x4 patch grid), their gradients, and short trainer runs (issue #21 §2)."""

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from cliplab.models.vision_parts import pixel_normalisation
from cliplab.train import TrainConfig, train
from cliplab.train.objectives import REGISTRY, DistContext, StepFeatures
from cliplab.train.objectives.declip import grid_cells
from cliplab.train.region_features import (
    Regions,
    RegionTeacher,
    student_pass,
    vit_parts,
)

from .conftest import micro_model

VIT8 = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
SIDE, GRID = 32, 4
BOXES = torch.tensor([[0, 3.0, 5.0, 21.0, 18.0], [0, 10.0, 12.0, 32.0, 30.0], [1, 0.0, 0.0, 16.0, 16.0], [1, 6.5, 2.0, 9.0, 27.0]])
PHRASE_IDS = torch.tensor([0, 1, 0, 2])
CAPTION_IDS = torch.tensor([0, 1])


@pytest.fixture
def step():
    """(objective features, the student model, the teacher model): a student nudged away from its frozen copy."""
    student = micro_model(VIT8)
    teacher = copy.copy(student)
    teacher.torch_module = copy.deepcopy(student.torch_module).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in student.torch_module.visual.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    pixels = torch.randn(2, 3, SIDE, SIDE, generator=gen)
    dense = student_pass(vit_parts(student), pixels)
    text = torch.randn(len(BOXES), 16, generator=gen).requires_grad_()
    regions = Regions(pixels, BOXES, text, PHRASE_IDS, PHRASE_IDS[:, None], dense, vit_parts(student), student.torch_module.encode_image,
                      RegionTeacher(teacher, pixel_normalisation(student)))  # fmt: skip
    feats = StepFeatures(image=dense.image, text=torch.randn(2, 16, generator=gen).requires_grad_(),
                         logit_scale=torch.tensor(10.0), caption_ids=CAPTION_IDS, regions=regions)  # fmt: skip
    return feats, student, teacher


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def box_mean(dense, row, box, side):
    """Direct area-weighted mean of the cells of ``dense`` (B, E, h, w) under a pixel box, cell by cell."""
    h = dense.shape[-1]
    cell = side / h
    x0, y0, x1, y1 = (float(v) for v in box)
    total, weight = torch.zeros(dense.shape[1]), 0.0
    for i in range(h):
        for j in range(h):
            oy = max(0.0, min(y1, (i + 1) * cell) - max(y0, i * cell))
            ox = max(0.0, min(x1, (j + 1) * cell) - max(x0, j * cell))
            total, weight = total + ox * oy * dense[row, :, i, j], weight + ox * oy
    return total / weight


def soft_ce(logits, ids):
    """Multi-positive cross-entropy of each row, targets spread over equal ids, by loops."""
    out = 0.0
    for i in range(len(ids)):
        positives = [j for j in range(len(ids)) if ids[j] == ids[i]]
        log_z = math.log(sum(math.exp(float(logits[i, j])) for j in range(len(ids))))
        out += sum(log_z - float(logits[i, j]) for j in positives) / len(positives)
    return out / len(ids)


def test_the_objectives_are_registered_and_read_the_region_teacher():
    for name in ("farslip", "declip", "dclip"):
        assert REGISTRY[name].needs == {"regions", "region_teacher"}


def test_farslip_matches_a_direct_computation(step):
    feats, student, _ = step
    regions = feats.regions
    fine = regions.teacher.dense(regions.pixels, scale=2.0)
    assert fine.shape[-1] == 2 * GRID
    patch = 0.0
    for b in range(2):
        for i in range(GRID):
            for j in range(GRID):
                target = fine[b, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(1, 2))
                patch += 1 - cos(regions.student.dense[b, :, i, j].detach(), target)
    patch /= 2 * GRID * GRID
    crops = torch.stack([student.torch_module.encode_image(roi_align(regions.pixels, BOXES[r : r + 1], SIDE, aligned=True, sampling_ratio=2))[0]
                         for r in range(len(BOXES))]).detach()  # fmt: skip
    logits = torch.tensor([[10.0 * cos(crops[i], regions.text[j].detach()) for j in range(len(BOXES))] for i in range(len(BOXES))])
    region = (soft_ce(logits, PHRASE_IDS) + soft_ce(logits.T, PHRASE_IDS)) / 2
    loss = REGISTRY["farslip"]()(feats, DistContext())
    assert loss.item() == pytest.approx(0.1 * patch + 1.0 * region, rel=1e-4)


def in_place_by_hand(teacher, pixels, box):
    """The teacher's embedding of image ``box[0]`` with every pixel the box does not touch set to the
    image's per-channel median, pixel by pixel."""
    image = teacher.pixels(pixels)[int(box[0])].float()
    view = image.clone()
    for c in range(3):
        median = image[c].flatten().median()
        for i in range(image.shape[1]):
            for j in range(image.shape[2]):
                if not (j + 1 > box[1] and j < box[3] and i + 1 > box[2] and i < box[4]):
                    view[c, i, j] = median
    return F.normalize(teacher.model.torch_module.encode_image(view[None]), dim=-1)[0]


def test_in_place_views_keep_the_box_where_it_is_and_fill_the_rest_with_the_median(step):
    teacher = step[0].regions.teacher
    pixels = step[0].regions.pixels
    got = teacher.in_place(pixels, BOXES, SIDE)
    for r, box in enumerate(BOXES):
        assert torch.allclose(got[r], in_place_by_hand(teacher, pixels, box), atol=1e-5)
    whole = teacher.in_place(pixels, torch.tensor([[0, 0.0, 0.0, SIDE, SIDE], [1, 0.0, 0.0, SIDE, SIDE]]), SIDE)
    assert torch.allclose(whole, teacher.image(pixels), atol=1e-5)  # a box over the whole image: the image itself


@pytest.mark.parametrize("view", ["in_place", "crop"])
def test_declip_matches_a_direct_computation(step, view):
    feats, student, _ = step
    regions = dataclasses.replace(feats.regions, unnamed_boxes=torch.tensor([[1, 2.0, 3.0, 30.0, 12.0]]))
    feats = dataclasses.replace(feats, regions=regions)
    objective = REGISTRY["declip"](vfm=None, content_view=view)
    cells = grid_cells(2, SIDE, 3, 6, torch.Generator().manual_seed(0))  # the objective's first draw (seed 0, draw 0)
    boxes = torch.cat([BOXES, regions.unnamed_boxes, cells])  # named, unnamed (held-out) and grid boxes alike
    if view == "crop":
        targets = regions.teacher.crops(regions.pixels, boxes, SIDE)
    else:
        targets = torch.stack([in_place_by_hand(regions.teacher, regions.pixels, bx) for bx in boxes])
    content = sum(1 - cos(box_mean(regions.student.dense.detach(), int(bx[0]), bx[1:], SIDE), targets[r]) for r, bx in enumerate(boxes)) / len(boxes)
    block = student.torch_module.visual.transformer.resblocks[-1]
    width = block.attn.in_proj_weight.shape[1]
    q = F.linear(block.ln_1(regions.student.last_input), block.attn.in_proj_weight[:width], block.attn.in_proj_bias[:width])[:, 1:].detach()
    t = regions.teacher.dense(regions.pixels).flatten(2)  # (B, E, N); the teacher's own correlations (vfm=None)
    context = 0.0
    for b in range(2):
        for i in range(GRID * GRID):
            row = torch.tensor([cos(t[b, :, i], t[b, :, j]) - cos(q[b, i], q[b, j]) for j in range(GRID * GRID)])
            context += float(row.norm())
    context /= 2 * GRID * GRID
    loss = objective(feats, DistContext())
    assert loss.item() == pytest.approx(1.0 * content + 0.1 * context, rel=1e-4)
    assert int(objective.state_dict()["draws"]) == 1  # checkpointed with the run: a resumed run draws the next cells


def test_declip_grid_cells_tile_an_m_by_n_grid():
    cells = grid_cells(50, SIDE, 3, 6, torch.Generator().manual_seed(3))
    for row in range(50):
        mine = cells[cells[:, 0] == row, 1:]
        widths, heights = mine[:, 2] - mine[:, 0], mine[:, 3] - mine[:, 1]
        m, n = round(SIDE / float(widths[0])), round(SIDE / float(heights[0]))
        assert torch.allclose(widths, torch.tensor(SIDE / m)) and torch.allclose(heights, torch.tensor(SIDE / n))
        assert 1 <= m <= 3 and math.ceil(m / 2) <= n <= 2 * m
        assert len(mine) == min(6, m * n) and len({tuple(c.tolist()) for c in mine}) == len(mine)
        assert mine.min() >= 0 and mine.max() <= SIDE


def test_declip_reads_the_refiners_teacher_as_its_vfm(step):
    feats, _, _ = step
    s_t = REGISTRY["declip"]().patch_correlations(feats.regions)  # cliplab:shapes-tiny's second stage
    assert s_t.shape == (2, GRID * GRID, GRID * GRID)
    assert torch.allclose(s_t, s_t.transpose(1, 2), atol=1e-5) and torch.allclose(s_t.diagonal(dim1=1, dim2=2), torch.ones(2, GRID * GRID), atol=1e-5)


def test_dclip_matches_a_direct_computation(step):
    feats = step[0]
    regions = feats.regions
    t_dense = regions.teacher.dense(regions.pixels)
    region = sum(1 - cos(box_mean(regions.student.dense.detach(), int(bx[0]), bx[1:], SIDE), box_mean(t_dense, int(bx[0]), bx[1:], SIDE))
                 for bx in BOXES) / len(BOXES)  # fmt: skip
    crops, whole = regions.teacher.crops(regions.pixels, BOXES, SIDE), regions.teacher.image(regions.pixels)
    image = 0.0
    for b in range(2):
        xs = [crops[r] for r in range(len(BOXES)) if int(BOXES[r, 0]) == b]
        mean = sum(xs) / len(xs)
        w = [math.exp(cos(x, mean) / 2.0) for x in xs]
        g = sum(wi / sum(w) * x for wi, x in zip(w, xs))
        target = 0.5 * whole[b] + 0.5 * g / g.norm()
        image += (1 - cos(feats.image[b].detach(), target)) / 2
    img, txt = F.normalize(feats.image.detach(), dim=-1), F.normalize(feats.text.detach(), dim=-1)
    logits = img @ txt.T / 0.05
    contrastive = (soft_ce(logits, CAPTION_IDS) + soft_ce(logits.T, CAPTION_IDS)) / 2
    loss = REGISTRY["dclip"]()(feats, DistContext())
    assert loss.item() == pytest.approx(region + image + contrastive, rel=1e-4)


@pytest.mark.parametrize("name", ["farslip", "declip", "dclip"])
def test_gradient_reaches_the_student_tower_and_not_the_teacher(step, name):
    feats, student, teacher = step
    objective = REGISTRY[name](**({"vfm": None} if name == "declip" else {}))
    objective(feats, DistContext()).backward()
    grads = [p.grad for p in student.torch_module.visual.parameters()]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    assert all(p.grad is None for p in teacher.torch_module.parameters())
    if name == "farslip":  # the phrases are contrasted with the crops
        assert float(feats.regions.text.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["farslip", "declip", "dclip"])
def test_a_step_without_regions_still_trains_the_dense_terms(step, name):
    feats = step[0]
    empty = dataclasses.replace(feats.regions, boxes=torch.zeros(0, 5), text=torch.zeros(0, 16), phrase_ids=torch.zeros(0, dtype=torch.long),
                                true_ids=torch.zeros(0, 1, dtype=torch.long))
    loss = REGISTRY[name](**({"vfm": None} if name == "declip" else {}))(dataclasses.replace(feats, regions=empty), DistContext())
    assert math.isfinite(loss.item()) and loss.requires_grad


@pytest.mark.parametrize("name", ["farslip", "declip", "dclip"])
def test_a_wider_teacher_gets_a_learned_projection(name):
    objective = REGISTRY[name](**({"vfm": None} if name == "declip" else {}))
    objective.match_teacher(16, 16)
    assert not list(objective.parameters())
    objective.match_teacher(16, 24)
    assert objective.project.weight.shape == (24, 16)
    assert objective.to_teacher(torch.randn(3, 16)).shape == (3, 24)


def _run(tmp_path, objectives, **extra):
    cfg = TrainConfig(data="synthetic:32", objectives=objectives, steps=3, batch_size=8, out=str(tmp_path), evaluate="none",
                      progress=False, device="cpu", workers=0, **extra)  # fmt: skip
    return train(cfg, model=micro_model(VIT8))


@pytest.mark.parametrize("name", ["farslip", "declip", "dclip"])
def test_three_trainer_steps_on_a_micro_vit(tmp_path, name):
    result = _run(tmp_path, f"clip,{name}")
    assert result.steps_run == 3 and all(math.isfinite(x) for x in result.losses)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["farslip", "declip", "dclip"])
def test_three_trainer_steps_on_shapes_vit(tmp_path, name):
    cfg = TrainConfig(model="cliplab:shapes-vit", data="synthetic:200", objectives=f"clip,{name}", steps=3, batch_size=16,
                      out=str(tmp_path), evaluate="none", progress=False, device="cpu")  # fmt: skip
    result = train(cfg)
    assert result.steps_run == 3 and all(math.isfinite(x) for x in result.losses)


def test_an_explicit_wider_teacher_trains_the_projection(tmp_path):
    """--teacher cliplab:shapes-vit (128-d, 64 px) for a 16-d, 32-px micro student: the projection learns."""
    from cliplab.train.trainer import Trainer

    cfg = TrainConfig(data="synthetic:32", objectives="clip,dclip", steps=2, batch_size=8, out=str(tmp_path), evaluate="none",
                      progress=False, device="cpu", workers=0, teacher="cliplab:shapes-vit")  # fmt: skip
    trainer = Trainer(cfg, model=micro_model(VIT8))
    projection = trainer.objective_modules["dclip"].project.weight
    before, teacher_before = projection.detach().clone(), [p.clone() for p in trainer.region_teacher.model.torch_module.parameters()]
    batch = next(iter(trainer._loader()))
    loss, _ = trainer.step(batch)
    assert math.isfinite(loss) and projection.shape == (128, 16) and not torch.equal(projection, before)
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, trainer.region_teacher.model.torch_module.parameters()))



def test_declip_resumes_bit_for_bit(tmp_path):
    """The grid cells drawn so far are checkpointed: a resumed run draws the cells the straight run drew."""

    def config(name):
        return TrainConfig(data="synthetic:32", objectives="clip,declip", steps=4, batch_size=8, out=str(tmp_path / name),
                           evaluate="none", progress=False, device="cpu", workers=0, ckpt_every=0)  # fmt: skip

    straight = train(config("straight"), model=micro_model(VIT8))
    part = train(config("resumed"), model=micro_model(VIT8), stop_after=2)
    rest = train(config("resumed"), model=micro_model(VIT8), resume=True)
    assert part.losses + rest.losses == straight.losses
