"""DC-CLIP stage 1 (Zhang et al., arXiv 2404.11249; wave-3 reference §5b): image-tower distillation
from a larger teacher with a feature-map term. ``distill``'s cosine terms on the embeddings plus
SmoothL1 between the student's last feature map, through a learned 1x1 adapter (a linear map of
the channels) and resized to the teacher's grid, and the teacher's last feature map:

    L = L_distill + w_map * mean SmoothL1_beta( up(A F_s), F_t )

``F_s`` (B, C_s, h_s, w_s) and ``F_t`` (B, C_t, h_t, w_t) are caught by forward hooks on the towers
(``cliplab.models.vision_parts.FeatureMaps``: a ResNet's ``layer4``, a ViT's patch tokens), ``up``
is bilinear resizing to (h_t, w_t). The reference reports feature-map targets beating logit targets
for the cross-lingual transfer. Use ``fmdistill`` with ``--teacher`` (a model, not stored features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.distill import DistillObjective

MAP_WEIGHT = 1.0
SMOOTH_L1_BETA = 1.0


def feature_map_loss(student: torch.Tensor, teacher: torch.Tensor, adapter: torch.nn.Module, beta: float = SMOOTH_L1_BETA) -> torch.Tensor:
    """mean SmoothL1(up(A F_s), F_t): ``adapter`` is a 1x1 convolution C_s -> C_t."""
    mapped = adapter(student.float())
    if mapped.shape[-2:] != teacher.shape[-2:]:
        mapped = F.interpolate(mapped, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    return F.smooth_l1_loss(mapped, teacher.float(), beta=beta)


class FeatureMapDistillObjective(DistillObjective):
    """``fmdistill``: ``distill`` plus :func:`feature_map_loss`; the trainer calls ``attach_maps``
    with the two maps' channel counts (the adapter is built there, before the optimizer)."""

    name = "fmdistill"
    needs = frozenset({"teacher", "maps"})

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None, map_weight: float = MAP_WEIGHT,
                 beta: float = SMOOTH_L1_BETA) -> None:  # fmt: skip
        super().__init__(student_dim, teacher_dim)
        self.map_weight, self.beta = map_weight, beta
        self.adapter: torch.nn.Module | None = None

    def attach_maps(self, student_channels: int, teacher_channels: int) -> None:
        self.adapter = torch.nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        loss = super().forward(feats, ctx)
        student, teacher = feats.extras.get("student_map"), feats.extras.get("teacher_map")
        if student is None or teacher is None or self.adapter is None:
            raise RuntimeError("fmdistill needs both towers' feature maps; the trainer did not provide them")
        return loss + self.map_weight * feature_map_loss(student, teacher, self.adapter, self.beta)
