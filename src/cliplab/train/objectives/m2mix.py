"""Geodesic multimodal mixup, m²-mix (Oh et al., NeurIPS 2023, Eq. 5-6): hard negatives made by
spherical interpolation between each pair's image and text embeddings.

    n_j = slerp(x_j, y_j, lam),  lam ~ Beta(alpha, alpha)
    L_I[i, j] = <x_i, y_i> if i == j else <x_i, n_j>;  L_T[i, j] = <y_i, x_i> if i == j else <y_i, n_j>
    L = CE(s * L_I, diag) + CE(s * L_T, diag)

Use it next to ``clip`` with a small weight (the paper sweeps 0.001-0.05): ``clip,m2mix:0.01``.
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


def slerp(a: torch.Tensor, b: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """sin(lam θ)/sin θ · a + sin((1-lam) θ)/sin θ · b, row-wise, θ = arccos(a·b) (the paper's form)."""
    cos = (a * b).sum(-1, keepdim=True).clamp(-1 + 1e-6, 1 - 1e-6)
    theta = torch.arccos(cos)
    return (torch.sin(lam * theta) * a + torch.sin((1 - lam) * theta) * b) / torch.sin(theta)


class M2MixObjective(Objective):
    name = "m2mix"

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        x, y = ctx.gather_all(normalise(feats.image)), ctx.gather_all(normalise(feats.text))
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample().to(x.device)
        if ctx.world_size > 1:  # every rank must mix with the same lambda
            import torch.distributed as dist

            dist.broadcast(lam, src=0)
        mixed = slerp(x, y, lam)
        eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
        positive = (x * y).sum(-1)
        logits_image = torch.where(eye, positive[:, None], x @ mixed.T)
        logits_text = torch.where(eye, positive[:, None], y @ mixed.T)
        labels = torch.arange(len(x), device=x.device)
        s = feats.logit_scale
        return F.cross_entropy(s * logits_image, labels) + F.cross_entropy(s * logits_text, labels)
