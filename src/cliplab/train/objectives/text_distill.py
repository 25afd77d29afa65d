"""Text-tower distillation (Multilingual-CLIP, Carlsson et al. LREC 2022; DC-CLIP stage 1 text branch,
Zhang et al. 2024): a student text tower maps a caption in any language to the teacher's text
embedding of the parallel (English) caption of the same scene,

    cosine:   L = mean_i (1 - cos(P y_i, t_i))
    mse:      L = mean_{i,d} (sqrt(D) (n(P y_i) - t_i))_d^2                       (Multilingual-CLIP's MSE)
    smoothl1: L = mean_{i,d} SmoothL1_beta(sqrt(D) (n(P y_i) - t_i))_d             (DC-CLIP's SmoothL1)

with ``y_i`` the student's text feature, ``t_i`` the teacher's (L2-normalised: the teacher gives
embeddings through ``Model.encode_texts``), ``n`` L2 normalisation, ``D`` the teacher's width (the
sqrt(D) scale gives each coordinate unit variance, so the loss is not vanishingly small) and ``P``
a learned linear map when the widths differ. The trainer feeds ``teacher_text`` from the batch's
``teacher_captions`` (the English parallels) when it has them, else from its captions. Pair it
with a contrastive term for DC-CLIP stage 2's alignment: ``clip,textdistill:1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cliplab.errors import InputError
from cliplab.train.objectives.base import DistContext, Objective, StepFeatures, normalise

TEXT_DISTILL_LOSSES = ("cosine", "mse", "smoothl1")


def text_distill_loss(student: torch.Tensor, teacher: torch.Tensor, loss: str = "cosine", beta: float = 1.0) -> torch.Tensor:
    """The loss between student rows (already projected to the teacher's width) and teacher rows."""
    s, t = normalise(student), normalise(teacher)
    if loss == "cosine":
        return (1 - (s * t).sum(-1)).mean()
    scale = math.sqrt(t.shape[-1])
    if loss == "mse":
        return F.mse_loss(s * scale, t * scale)
    if loss == "smoothl1":
        return F.smooth_l1_loss(s * scale, t * scale, beta=beta)
    raise InputError(f"unknown text distillation loss {loss!r}; use one of {', '.join(TEXT_DISTILL_LOSSES)}")


class TextDistillObjective(Objective):
    """``textdistill``: :func:`text_distill_loss` of the step's text features against ``teacher_text``."""

    name = "textdistill"
    needs = frozenset({"teacher_text"})

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None, loss: str = "cosine", beta: float = 1.0) -> None:
        super().__init__()
        if loss not in TEXT_DISTILL_LOSSES:
            raise InputError(f"unknown text distillation loss {loss!r}; use one of {', '.join(TEXT_DISTILL_LOSSES)}")
        self.loss, self.beta = loss, beta
        same = student_dim is None or teacher_dim is None or student_dim == teacher_dim
        self.project = torch.nn.Identity() if same else torch.nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        if feats.teacher_text is None:
            raise RuntimeError("textdistill needs the teacher's text features; the trainer did not provide them")
        return text_distill_loss(self.project(feats.text.float()), feats.teacher_text, self.loss, self.beta)
