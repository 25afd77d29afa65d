"""CLIP-Refine (Yamaguchi et al., CVPR 2025): post-pre-training that narrows the modality gap.

``rafa`` — random feature alignment: image and text features of a pair are both pulled towards
one shared draw from the prior N(0, I), on the raw (unnormalised) features:

    L_RaFA = MSE(z_I, z_ref) + MSE(z_T, z_ref)

``hycd`` — hybrid contrastive distillation against the frozen starting model. With raw-feature
similarities S = z_I z_T^T (no logit scale) and temperature T:

    q    = alpha * I + (1 - alpha) * softmax(S_teacher / T)            (row-wise)
    L_KD = 1/2 [ KL(q_I→T || softmax(S / T)) + KL(q_T→I || softmax(S^T / T)) ] * T^2

CLIP-Refine is ``rafa,hycd`` (alpha 0.5, T 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import DistContext, Objective, StepFeatures


class RaFAObjective(Objective):
    name = "rafa"

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        z_i, z_t = feats.image.float(), feats.text.float()
        z_ref = torch.randn(z_i.shape, device=z_i.device)  # shared by the pair's image and text
        return F.mse_loss(z_i, z_ref) + F.mse_loss(z_t, z_ref)


def hybrid_targets(teacher_logits: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
    eye = torch.eye(len(teacher_logits), device=teacher_logits.device)
    return alpha * eye + (1 - alpha) * torch.softmax(teacher_logits / temperature, dim=1)


class HyCDObjective(Objective):
    name = "hycd"
    needs = frozenset({"frozen"})

    def __init__(self, alpha: float = 0.5, temperature: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.temperature = alpha, temperature

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        z_i, z_t = ctx.gather_all(feats.image.float()), ctx.gather_all(feats.text.float())
        f_i, f_t = ctx.gather_all(feats.frozen_image.float()), ctx.gather_all(feats.frozen_text.float())
        t = self.temperature
        student, teacher = z_i @ z_t.T, f_i @ f_t.T
        kl = lambda s, q: F.kl_div(F.log_softmax(s / t, dim=1), q, reduction="batchmean")
        q_i2t = hybrid_targets(teacher, self.alpha, t)
        q_t2i = hybrid_targets(teacher.T, self.alpha, t)
        return (kl(student, q_i2t) + kl(student.T, q_t2i)) / 2 * t * t
