"""DeCLIP's decoupled distillation of the last block (Wang et al., CVPR 2025, arXiv 2505.04410;
xiaomoguhz/DeCLIP ``src/training/declip.py``, mode ``qq_vfm_distill``):

    L = 1.0 * L_content + 0.1 * L_context        (the shipped script's weights)

- ``L_content`` (CLIPSelf-style content alignment): the student's dense features pooled over boxes,
  ``mean_r 1 - cos(pool(F, box_r), T(view_r))``, T the frozen region teacher's image embedding of a
  view of the box. The reference's view is the box cut out and resized to the teacher's input
  (``content_view="crop"``). The default here, ``"in_place"``, keeps the box where it is at the image's
  scale and sets every other pixel to the image's median colour: the bundled models are trained on
  whole 64-px scenes of small objects and do not know a cut-out object blown up to the input, so their
  crop embeddings are poor targets (shapes-vit's zero-shot shape accuracy on the objects of 200 test
  scenes: 0.21 from crops, 0.90 from in-place views). The boxes are the step's region boxes, those whose
  phrase names a held-out word (``--region-exclude``; the term reads no phrase, so their boxes stay), and,
  as the reference's ``GridDistillDataset`` draws them, cells of a random M x N grid per image
  (M <= ``max_split``, N in [ceil(M/2), 2M], at most ``max_boxes`` cells): 3 and 6 on 64-px inputs
  instead of 6 and 20. The reference pools with RoIAlign to 1x1; here box means weighted by cell area
  (``pool_boxes``).
- ``L_context`` (context distillation): C = the queries of the student's last block, patches only,
  heads concatenated (B, N, d); S_S = cos-sim matrix of C; S_T = the cos-sim matrix of a vision
  foundation model's patch features on the student's grid; ``mean_{b,i} ||S_T[b,i,:] - S_S[b,i,:]||_2``.
  The VFM is the one cliplab's CLIP-DINOiser refiner learns correlations from (its teacher,
  :mod:`cliplab.dense.refine`): ``cliplab:shapes-tiny``'s second ResNet stage, average-pooled to the grid
  and centred; DINOv2-B plays the role in the paper. ``vfm=None`` uses the region teacher's own dense
  feature correlations instead.

Deviations: the in-place content view (above); the reference's inference path is q-q attention without residual or FFN; cliplab
evaluates ``naclip``, so the content term trains the student's ``naclip`` dense features
(``regions.student.dense``) while the context term shapes the queries q-q attention would read.
The reference's per-epoch weight ensemble (alpha 0.7) is not part of a loss and is not applied here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cliplab.dense.refine import correlations, teacher_features
from cliplab.models.vision_parts import pixel_normalisation
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.regional import TeacherProjected, cosine_distance, pool_at
from cliplab.train.region_features import Regions, RegionTeacher

Tensor = torch.Tensor
VFM = "cliplab:shapes-tiny"  # the refiner's correlation teacher (cliplab segment refiner --teacher)
VFM_LAYER = 2  # its ResNet stage (--teacher-layer)


def grid_cells(batch: int, side: int, max_split: int, max_boxes: int, gen: torch.Generator) -> Tensor:
    """(K, 5) boxes ``row, x0, y0, x1, y1``: per image, up to ``max_boxes`` random cells of an M x N grid
    (M columns in [1, max_split], N rows in [ceil(M/2), 2M]) over a ``side``-pixel input (DeCLIP's grid crops)."""
    boxes = []
    for row in range(batch):
        m = int(torch.randint(1, max_split + 1, (1,), generator=gen))
        n = int(torch.randint(math.ceil(m / 2), 2 * m + 1, (1,), generator=gen))
        cells = torch.randperm(m * n, generator=gen)[:max_boxes]
        col, line = cells % m, cells // m
        w, h = side / m, side / n
        boxes.append(torch.stack([torch.full_like(col, row), col * w, line * h, (col + 1) * w, (line + 1) * h], 1).float())
    return torch.cat(boxes)


def query_context(regions: Regions) -> Tensor:
    """(B, N, d) DeCLIP's context: the queries of the student's last block for the patches, heads concatenated."""
    q, _, _ = regions.parts.qkv(regions.parts.ln_1(regions.student.last_input))
    return q[:, :, 1:].transpose(1, 2).flatten(2)


def context_distance(teacher_corr: Tensor, context: Tensor) -> Tensor:
    """DeCLIP's context loss: mean over images and rows of ||S_T[i] - S_S[i]||_2, S_S the cos-sims of ``context``."""
    flat = F.normalize(context.float(), dim=-1)
    return torch.linalg.vector_norm(teacher_corr - flat @ flat.transpose(1, 2), dim=-1).mean()


def unit_pixels(teacher: RegionTeacher, pixels: Tensor) -> Tensor:
    """The student's preprocessed pixels back in [0, 1] (through the teacher's normalisation)."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in pixel_normalisation(teacher.model))
    return teacher.pixels(pixels).float().cpu() * std + mean


class DeClipObjective(TeacherProjected):
    name = "declip"

    def __init__(self, content_weight: float = 1.0, context_weight: float = 0.1, max_split: int = 3, max_boxes: int = 6,
                 vfm: str | None = VFM, vfm_layer: int = VFM_LAYER, seed: int = 0, content_view: str = "in_place") -> None:  # fmt: skip
        super().__init__()
        if content_view not in ("crop", "in_place"):
            raise ValueError(f"content_view must be 'crop' or 'in_place', not {content_view!r}")
        self.content_view = content_view
        self.content_weight, self.context_weight = content_weight, context_weight
        self.max_split, self.max_boxes = max_split, max_boxes
        self.vfm_spec, self.vfm_layer = vfm, vfm_layer
        self._vfm = None  # loaded at the first step, on the step's device; not a parameter or buffer
        self.seed = seed
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))  # checkpointed: a resumed run draws the same cells

    @torch.no_grad()
    def patch_correlations(self, regions: Regions) -> Tensor:
        """S_T (B, N, N): the VFM's (or, without one, the region teacher's) patch cos-sims on the student's grid."""
        grid = regions.student.grid
        if self.vfm_spec is None:
            feats = F.adaptive_avg_pool2d(regions.teacher.dense(regions.pixels), grid)
        else:
            if self._vfm is None:
                from cliplab.models import load_model

                self._vfm = load_model(self.vfm_spec, device=regions.pixels.device)
                self._vfm.torch_module.eval().requires_grad_(False)
            feats = teacher_features(self._vfm, unit_pixels(regions.teacher, regions.pixels), self.vfm_layer, grid)
        return correlations(feats.float()).to(regions.pixels.device)

    def forward(self, feats: StepFeatures, ctx: DistContext) -> Tensor:
        regions = self.regions(feats)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.draws))
        self.draws += 1
        cells = grid_cells(len(regions.pixels), regions.side, self.max_split, self.max_boxes, gen)
        unnamed = regions.unnamed_boxes if regions.unnamed_boxes is not None else regions.boxes.new_zeros(0, 5)
        boxes = torch.cat([regions.boxes.float(), unnamed.float(), cells.to(regions.boxes.device)])
        student = self.to_teacher(pool_at(regions.student.dense, boxes, regions.side))
        view = regions.teacher.in_place if self.content_view == "in_place" else regions.teacher.crops
        content = cosine_distance(student, view(regions.pixels, boxes, regions.side))
        context = context_distance(self.patch_correlations(regions), query_context(regions))
        return self.content_weight * content + self.context_weight * context
