"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023, Alg. 1): open_clip's ``SigLipLoss``.

A model without a learned bias (plain CLIP weights) gets one here, initialised to -10 as in the
paper; it is trained and checkpointed with the objective.
"""

from __future__ import annotations

import torch

from cliplab.train.objectives.base import (
    DistContext,
    Objective,
    StepFeatures,
    normalise,
)


class SigLipObjective(Objective):
    name = "siglip"

    def __init__(self, init_bias: float = -10.0) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(float(init_bias)))
        self._losses: dict[tuple[int, int], torch.nn.Module] = {}

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        from open_clip.loss import SigLipLoss

        key = (ctx.rank, ctx.world_size)
        if key not in self._losses:
            self._losses[key] = SigLipLoss(rank=ctx.rank, world_size=ctx.world_size)
        bias = feats.logit_bias if feats.logit_bias is not None else self.bias
        return self._losses[key](normalise(feats.image), normalise(feats.text), feats.logit_scale, bias)
