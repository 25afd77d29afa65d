"""Feature distillation from a teacher model (DCLIP / DC-CLIP style): the student's normalised
image and text features are pulled towards the teacher's by cosine distance,

    L = mean_i (1 - cos(P x_i, t^I_i)) + mean_i (1 - cos(P y_i, t^T_i)),

with P a learned linear map when the teacher's embedding width differs from the student's (the
identity otherwise). Pair it with a contrastive term: ``clip,distill:1``.
"""

from __future__ import annotations

import torch

from cliplab.train.objectives.base import (
    DistContext,
    Objective,
    StepFeatures,
    normalise,
)


class DistillObjective(Objective):
    name = "distill"
    needs = frozenset({"teacher"})

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None) -> None:
        super().__init__()
        same = student_dim is None or teacher_dim is None or student_dim == teacher_dim
        self.project = torch.nn.Identity() if same else torch.nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        losses = []
        for student, teacher in ((feats.image, feats.teacher_image), (feats.text, feats.teacher_text)):
            if teacher is not None:
                cos = (normalise(self.project(student.float())) * normalise(teacher)).sum(-1)
                losses.append((1 - cos).mean())
        if not losses:
            raise RuntimeError("distill needs teacher features; the trainer did not provide them")
        return torch.stack(losses).sum()



