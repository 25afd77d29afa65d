"""Symmetric contrastive loss with hard-negative captions (in the spirit of CLIP-IN, Wang et al. 2025).

Every image also competes against the batch's hard-negative captions (K per image: the true
caption with attributes exchanged or replaced), so it must tell "a red star and a blue square"
from "a blue star and a red square". Text-to-image stays the usual InfoNCE:

    L = 1/2 [ CE_i( s * x_i [Y; N]^T ) + CE_j( s * y_j X^T ) ]

with X, Y the batch's image and caption features, N all its hard negatives, s the logit scale,
and targets spread over pairs that share a caption. Missing negatives are masked out.

On synthetic scenes the batch itself also holds each scene's edited twin, image and caption
(``cliplab.train.batches``), so the text-to-image side meets hard-negative images as well: the
symmetric form of CLIP-IN's edited pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import (
    DistContext,
    Objective,
    StepFeatures,
    normalise,
    soft_targets,
)

MASKED = -1e4  # logit of a missing negative: exp() is 0, yet 0 * log-softmax stays finite (unlike -inf)


class HardNegativeObjective(Objective):
    name = "hardneg"
    needs = frozenset({"negatives"})

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        if feats.negatives is None:
            raise RuntimeError("hardneg needs hard-negative captions; the trainer did not provide them")
        x, y = ctx.gather_all(normalise(feats.image)), ctx.gather_all(normalise(feats.text))
        n = ctx.gather_all(normalise(feats.negatives))
        valid = ctx.gather_all(feats.negatives_valid.float()).bool()
        ids = ctx.gather_ids(feats.caption_ids)
        scale = feats.logit_scale
        targets = soft_targets(ids, ids)
        neg_logits = (scale * x @ n.T).masked_fill(~valid[None, :], MASKED)
        logits_image = torch.cat([scale * x @ y.T, neg_logits], dim=1)
        targets_image = torch.cat([targets, torch.zeros_like(neg_logits)], dim=1)
        return (F.cross_entropy(logits_image, targets_image) + F.cross_entropy(scale * y @ x.T, targets)) / 2
