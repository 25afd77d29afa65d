"""Long-CLIP's primary-component matching (Zhang et al. 2024, Sec. 3.2): the short branch.

The batch's normalised image features are reduced to their first ``components`` principal
components (centre, project on the top right-singular vectors, reconstruct, add the mean back)
and matched with the short captions (the first sentence of each caption) by a symmetric
cross-entropy with label smoothing 0.1. The long branch is the ``clip`` objective on the full
captions, so Long-CLIP's loss is ``clip,pcm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import (
    DistContext,
    Objective,
    StepFeatures,
    normalise,
)


def principal_components(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x`` reconstructed from its top-``k`` principal components (rows are samples).

    The basis is found without gradient: a batch with no more rows than dimensions (64 x 128) has
    repeated zero singular values after centring, where the SVD's backward divides by
    s_i^2 - s_j^2 = 0 and turns every gradient into inf/NaN; gradients flow through the projection."""
    mean = x.mean(0, keepdim=True)
    centred = x - mean
    _, _, vh = torch.linalg.svd(centred.detach(), full_matrices=False)
    basis = vh[: min(k, vh.shape[0])]
    return centred @ basis.T @ basis + mean


class PrimaryComponentObjective(Objective):
    name = "pcm"
    needs = frozenset({"short"})

    def __init__(self, components: int = 32, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.components, self.label_smoothing = components, label_smoothing

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        x = ctx.gather_all(normalise(feats.image))
        short = ctx.gather_all(normalise(feats.short_text))
        coarse = normalise(principal_components(x, self.components))
        logits = feats.logit_scale * coarse @ short.T
        labels = torch.arange(len(x), device=x.device)
        ce = lambda z: F.cross_entropy(z, labels, label_smoothing=self.label_smoothing)
        return (ce(logits) + ce(logits.T)) / 2
