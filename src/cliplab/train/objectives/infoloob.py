"""InfoLOOB, CLOOB's leave-one-out bound (Fürst et al. 2022, Eq. 6), with optional modern-Hopfield
retrieval of the embeddings (their Eq. 8).

    L_LOOB(a, b) = tau * [ -mean_i K_ii + mean_i logsumexp_{j != i} K_ij ],   K = a b^T / tau

Without Hopfield: L = L_LOOB(x, y) + L_LOOB(y, x) for normalised image x and text y features.
With Hopfield (beta > 0): U_x = Hop(x, X), V_x = Hop(y, X), U_y = Hop(y, Y), V_y = Hop(x, Y),
Hop(state, P) = normalise(softmax(beta * state P^T) P), and L = L_LOOB(U_x, V_x) + L_LOOB(U_y, V_y).
1/tau is the model's (exponentiated) logit scale.
"""

from __future__ import annotations

import torch

from cliplab.train.objectives.base import (
    DistContext,
    Objective,
    StepFeatures,
    normalise,
)


def info_loob(a: torch.Tensor, b: torch.Tensor, inv_tau: torch.Tensor) -> torch.Tensor:
    """InfoLOOB with anchors ``a`` and candidates ``b`` (row i of each is a positive pair)."""
    k = inv_tau * a @ b.T
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    negatives = torch.logsumexp(k.masked_fill(eye, float("-inf")), dim=1)
    return (-k.diagonal().mean() + negatives.mean()) / inv_tau


def hopfield(state: torch.Tensor, stored: torch.Tensor, beta: float) -> torch.Tensor:
    """One retrieval step of a modern Hopfield network, re-normalised."""
    return normalise(torch.softmax(beta * state @ stored.T, dim=1) @ stored)


class InfoLoobObjective(Objective):
    name = "infoloob"

    def __init__(self, hopfield_beta: float = 0.0) -> None:
        super().__init__()
        self.hopfield_beta = hopfield_beta

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        x, y = ctx.gather_all(normalise(feats.image)), ctx.gather_all(normalise(feats.text))
        inv_tau = feats.logit_scale
        if self.hopfield_beta > 0:
            beta = self.hopfield_beta
            u_x, v_x = hopfield(x, x, beta), hopfield(y, x, beta)
            u_y, v_y = hopfield(y, y, beta), hopfield(x, y, beta)
            return info_loob(u_x, v_x, inv_tau) + info_loob(u_y, v_y, inv_tau)
        return info_loob(x, y, inv_tau) + info_loob(y, x, inv_tau)


class CloobObjective(InfoLoobObjective):
    """InfoLOOB over Hopfield-retrieved embeddings with CLOOB's default beta (14.3)."""

    name = "cloob"

    def __init__(self, hopfield_beta: float = 14.3) -> None:
        super().__init__(hopfield_beta)
