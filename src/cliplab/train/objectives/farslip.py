"""FarSLIP's two region terms (arXiv 2511.14901; NJU-LHRS/FarSLIP ``open_clip_train/train.py``), as one objective:

    L = 0.1 * L_patch + 1.0 * L_region

the weights of the reference's ``config.py`` (its arg_dict overrides ``params.py``): stage 1's
distillation weight 0.1 and stage 2's local-ITC weight 1.0; the global ITC (weight 1.0 in both
stages) is the ``clip`` objective beside it: ``clip,farslip``.

- ``L_patch`` (stage 1, patch-to-patch self-distillation): the student's dense features on its grid
  against the region teacher's dense features of the same image at twice the resolution, average-pooled
  back to the student's grid: ``mean_{b,ij} 1 - cos(s_bij, t_bij)``. Issue #21's form: the reference
  matches RoIAlign-pooled tokens of the image to the mean tokens of the same model on the crop
  (``roi2pooled``, "active", no teacher); here the finer view is the whole image at 2x from a frozen
  teacher (the starting model unless ``--teacher``). Both sides use cliplab's ``naclip`` last block
  (the reference's SegEarth block is not one of cliplab's dense methods).
- ``L_region`` (stage 2, region-category alignment through the class token): each box is cut out of
  the image (RoIAlign), resized to the input side and embedded by the student's whole image tower (its
  class token); the crops and the region phrases are contrasted with ``MultiPosConLossMM``: targets
  M_ij = [phrase_i = phrase_j] row-normalised, soft-target cross-entropy both ways over the logits
  ``s * v t^T`` (s the CLIP logit scale), rows gathered over ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from cliplab.train.objectives.base import (
    DistContext,
    StepFeatures,
    multi_positive_infonce,
    region_positives,
)
from cliplab.train.objectives.regional import TeacherProjected, cosine_distance
from cliplab.train.region_features import Regions

Tensor = torch.Tensor


def patch_distance(student: Tensor, teacher_fine: Tensor) -> Tensor:
    """FarSLIP stage 1 as issue #21 has it: 1 - cos per student cell against the finer teacher map
    (B, E, H, W) average-pooled to the student's grid, averaged over cells and images."""
    target = F.adaptive_avg_pool2d(teacher_fine.float(), student.shape[-2:])
    return cosine_distance(student, target, dim=1)


def crop_embeddings(regions: Regions) -> Tensor:
    """(R, D) the student's image embeddings of its boxes cut out of the images at the input side."""
    if not len(regions.boxes):
        return regions.student.image.new_zeros(0, regions.student.image.shape[1])
    side = regions.side
    crops = roi_align(regions.pixels.float(), regions.boxes.float(), output_size=side, aligned=True, sampling_ratio=2)
    return regions.encode_image(crops.to(regions.pixels.dtype))


class FarSlipObjective(TeacherProjected):
    name = "farslip"

    def __init__(self, patch_weight: float = 0.1, region_weight: float = 1.0, scale: float = 2.0) -> None:
        super().__init__()
        self.patch_weight, self.region_weight, self.scale = patch_weight, region_weight, scale

    def forward(self, feats: StepFeatures, ctx: DistContext) -> Tensor:
        regions = self.regions(feats)
        fine = regions.teacher.dense(regions.pixels, scale=self.scale)
        patch = patch_distance(self.dense_to_teacher(regions.student.dense), fine)
        crops, text = ctx.gather_rows(crop_embeddings(regions)), ctx.gather_rows(regions.text)
        positives = region_positives(regions.true_ids, regions.phrase_ids, ctx)
        region = multi_positive_infonce(crops, text, positives, feats.logit_scale) if len(positives) else patch.new_zeros(())
        return self.patch_weight * patch + self.region_weight * region
