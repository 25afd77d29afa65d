"""DCLIP's region-level distillation (Csizmadia et al., arXiv 2505.21549; ChuckDanz/DCLIP
``training/CLIP_image_distillation.py`` and ``patch_text_aggregation.py``):

    L = L_region + L_img + 1.0 * L_con

- ``L_region`` (issue #21's region-level distillation): each region box pooled from the teacher's dense
  tokens and from the student's, ``mean_r 1 - cos(pool(S, box_r), pool(T, box_r))``.
- ``L_img`` (DCLIP's image term): ``1 - cos(student image, meta-teacher global)``. The meta-teacher
  stand-in is training-free: DCLIP's global is 0.5 g_text + 0.5 g_image, each side aggregated as
  g = sum_i w_i x_i with w = softmax(cos(x_i, mean_j x_j) / 2.0); here g_image aggregates the frozen
  region teacher's embeddings of the image's box crops (DCLIP's region tokens, without its learned
  cross-attention) and the caption half is replaced by the teacher's whole-image embedding (the
  caption is absent at test time and would leak into the target), so the target is
  normalise(0.5 teacher image + 0.5 normalise(g_image)), the teacher image alone when an image has
  no region.
- ``L_con`` (DCLIP's contrastive term): symmetric InfoNCE between the student's images and captions at
  tau = 0.05 (logit scale 20), repeated captions as positives (the ``clip`` objective at that scale).

DCLIP's text term (student text towards the frozen text embedding) and its progressive unfreezing are
not part of this objective.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.clip import ClipObjective
from cliplab.train.objectives.regional import TeacherProjected, cosine_distance, pool_at

Tensor = torch.Tensor
TAU = 0.05  # DCLIP's temperature everywhere
AGGREGATION_TEMPERATURE = 2.0  # patch_text_aggregation.py: softmax(cos(x_i, mean) / 2.0)


def aggregate(rows: Tensor, groups: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """DCLIP's token aggregation per group: g = sum_i w_i x_i, w = softmax over the group of
    cos(x_i, group mean) / 2.0. Returns (n_groups, E) and which groups have rows."""
    count = torch.zeros(n_groups, device=rows.device).index_add_(0, groups, torch.ones_like(groups, dtype=torch.float32))
    mean = torch.zeros(n_groups, rows.shape[1], device=rows.device).index_add_(0, groups, rows.float())
    mean = mean / count.clamp_min(1)[:, None]
    score = F.cosine_similarity(rows.float(), mean[groups], dim=-1) / AGGREGATION_TEMPERATURE
    weight = torch.exp(score - score.max())
    weight = weight / torch.zeros(n_groups, device=rows.device).index_add_(0, groups, weight)[groups]
    pooled = torch.zeros_like(mean).index_add_(0, groups, weight[:, None] * rows.float())
    return pooled, count > 0


class DClipObjective(TeacherProjected):
    name = "dclip"

    def __init__(self, region_weight: float = 1.0, image_weight: float = 1.0, contrastive_weight: float = 1.0) -> None:
        super().__init__()
        self.region_weight, self.image_weight, self.contrastive_weight = region_weight, image_weight, contrastive_weight
        self.contrastive = ClipObjective()

    @torch.no_grad()
    def meta_teacher(self, teacher, pixels: Tensor, boxes: Tensor, side: int) -> Tensor:
        """(B, E) the stand-in for DCLIP's meta-teacher global embedding (see the module docstring)."""
        whole = teacher.image(pixels)
        if not len(boxes):
            return whole
        g, has = aggregate(teacher.crops(pixels, boxes, side), boxes[:, 0].long(), len(pixels))
        mixed = F.normalize(0.5 * whole + 0.5 * F.normalize(g, dim=-1), dim=-1)
        return torch.where(has[:, None], mixed, whole)

    def forward(self, feats: StepFeatures, ctx: DistContext) -> Tensor:
        regions = self.regions(feats)
        teacher, boxes, side = regions.teacher, regions.boxes.float(), regions.side
        loss = self.image_weight * cosine_distance(self.to_teacher(feats.image), self.meta_teacher(teacher, regions.pixels, boxes, side))
        if len(boxes):
            student = self.to_teacher(pool_at(regions.student.dense, boxes, side))
            loss = loss + self.region_weight * cosine_distance(student, pool_at(teacher.dense(regions.pixels), boxes, side))
        fixed = dataclasses.replace(feats, logit_scale=feats.logit_scale.new_tensor(1 / TAU), logit_bias=None)
        return loss + self.contrastive_weight * self.contrastive(fixed, ctx)
