"""What every objective sees: the step's features and the distributed context they are gathered in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from cliplab.train.region_features import Regions


@dataclass
class StepFeatures:
    """Unnormalised features of this process's share of the batch (B rows each).

    ``caption_ids`` marks pairs with the same caption text (they are positives of each other).
    ``negatives`` (B*K rows, K hard-negative captions per image, in image order) and
    ``negatives_valid`` are filled when an objective asks for them, likewise ``short_text``
    (Long-CLIP's short captions), ``teacher_image``/``teacher_text`` (a teacher model's
    features) and ``frozen_image``/``frozen_text`` (the frozen starting model's features).
    """

    image: torch.Tensor
    text: torch.Tensor
    logit_scale: torch.Tensor  # already exponentiated, as open_clip's CLIP.forward returns it
    caption_ids: torch.Tensor
    logit_bias: torch.Tensor | None = None
    negatives: torch.Tensor | None = None
    negatives_valid: torch.Tensor | None = None
    short_text: torch.Tensor | None = None
    teacher_image: torch.Tensor | None = None
    teacher_text: torch.Tensor | None = None
    frozen_image: torch.Tensor | None = None
    frozen_text: torch.Tensor | None = None
    regions: Regions | None = None  # filled when an objective needs "regions" (cliplab.train.region_features)
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits among the data-parallel ranks, and how features are gathered.

    ``local_loss`` and ``gather_with_grad`` have open_clip's ``gather_features`` meaning.
    """

    rank: int = 0
    world_size: int = 1
    local_loss: bool = False
    gather_with_grad: bool = False

    def gather_all(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of ``x`` in rank order, differentiable to every rank's features.

        Objectives that compute one global loss on the gathered batch use this: each rank then
        holds the global loss, and the gradient DDP averages equals the one-process gradient.
        """
        if self.world_size == 1:
            return x
        import torch.distributed.nn.functional as dist_fn

        return torch.cat(dist_fn.all_gather(x), dim=0)

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`gather_all` for a tensor whose row count differs between ranks (a batch's regions)."""
        if self.world_size == 1:
            return x
        import torch.distributed as dist
        import torch.distributed.nn.functional as dist_fn

        count = torch.tensor([len(x)], device=x.device)
        counts = [torch.empty_like(count) for _ in range(self.world_size)]
        dist.all_gather(counts, count)
        counts = [int(c) for c in counts]
        padded = torch.cat([x, x.new_zeros(max(counts) - len(x), *x.shape[1:])])
        parts = dist_fn.all_gather(padded)
        return torch.cat([p[:n] for p, n in zip(parts, counts)])

    def gather_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return ids
        import torch.distributed as dist

        out = [torch.empty_like(ids) for _ in range(self.world_size)]
        dist.all_gather(out, ids)
        return torch.cat(out)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def spread(positives: torch.Tensor) -> torch.Tensor:
    """Row-stochastic targets spread evenly over each row's positive columns (a 0/1 matrix)."""
    positives = positives.float()
    return positives / positives.sum(1, keepdim=True).clamp_min(1.0)


def soft_targets(row_ids: torch.Tensor, col_ids: torch.Tensor) -> torch.Tensor:
    """Row-stochastic targets spread evenly over the columns whose caption equals the row's."""
    return spread(row_ids[:, None] == col_ids[None, :])


def region_positives(true_ids: torch.Tensor, phrase_ids: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """(M, M) 0/1 over the step's gathered regions: [r, k] = 1 where the phrase drawn for region k is one
    of region r's descriptions (``true_ids`` (R, A) this rank's, ``phrase_ids`` (R,) the drawn ones).
    Equal drawn phrases are positives of each other, and so is "a star" drawn for one star for every star."""
    all_ids = ctx.gather_rows(phrase_ids)
    return ctx.gather_rows((true_ids[:, :, None] == all_ids[None, None, :]).any(1).float())


def multi_positive_infonce(regions: torch.Tensor, phrases: torch.Tensor, positives: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between (M, D) ``regions`` and their ``phrases`` with several positives:
    ``positives`` (M, M) [r, k] = 1 where phrase k describes region r, targets spread over them both ways
    (FarSLIP's ``MultiPosConLossMM``; CLOC's region-text loss, eq. 2, with repeated phrases)."""
    logits = scale * normalise(regions) @ normalise(phrases).T
    return (F.cross_entropy(logits, spread(positives)) + F.cross_entropy(logits.T, spread(positives.T))) / 2


class Objective(torch.nn.Module):
    """A training loss over :class:`StepFeatures`. ``needs`` names the optional features it reads."""

    name: str = ""
    needs: frozenset[str] = frozenset()
    lr_scale: float = 1.0  # its own parameters' learning rate, times the run's (a new head may need to learn faster than the tower)

    def attach_regions(self, model, parts) -> None:
        """Called once the student's ViT ``parts`` exist (region objectives): build what depends on its shape."""

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
