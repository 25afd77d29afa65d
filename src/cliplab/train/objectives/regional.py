"""What the distilling region objectives (farslip, declip, dclip) share: the step's regions and
teacher, a learned map into the teacher's embedding space, box pooling at any grid, cosine distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.dense.box_pool import pool_boxes
from cliplab.train.objectives.base import Objective, StepFeatures
from cliplab.train.region_features import Regions

Tensor = torch.Tensor


class TeacherProjected(Objective):
    """A region objective that reads the region teacher. When the teacher's embedding width differs
    from the student's, the student's features pass through a learned linear map first (as
    :class:`~cliplab.train.objectives.distill.DistillObjective` does); the trainer sizes it with
    :meth:`match_teacher` once the teacher is loaded."""

    needs = frozenset({"regions", "region_teacher"})

    def __init__(self) -> None:
        super().__init__()
        self.project: torch.nn.Module = torch.nn.Identity()

    def match_teacher(self, student_dim: int, teacher_dim: int) -> None:
        self.project = torch.nn.Identity() if student_dim == teacher_dim else torch.nn.Linear(student_dim, teacher_dim, bias=False)

    def to_teacher(self, x: Tensor) -> Tensor:
        """Student rows (..., D) in the teacher's space (..., E), L2-normalised."""
        return F.normalize(self.project(x.float()), dim=-1)

    def dense_to_teacher(self, dense: Tensor) -> Tensor:
        """Student dense features (B, D, h, w) in the teacher's space (B, E, h, w), L2-normalised per cell."""
        return self.to_teacher(dense.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def regions(self, feats: StepFeatures) -> Regions:
        if feats.regions is None or feats.regions.teacher is None:
            raise RuntimeError(f"{self.name} needs the step's regions and a region teacher; the trainer did not provide them")
        return feats.regions


def pool_at(dense: Tensor, boxes: Tensor, side: int) -> Tensor:
    """(R, E) box means of ``dense`` (B, E, h, w) for boxes (R, 5) in the pixels of a ``side``-pixel input,
    whatever the grid (a teacher's may be finer or coarser than the student's)."""
    return pool_boxes(dense, boxes, side / dense.shape[-1])


def cosine_distance(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """Mean of 1 - cos(a, b) along ``dim``."""
    return (1 - F.cosine_similarity(a.float(), b.float(), dim=dim)).mean()
