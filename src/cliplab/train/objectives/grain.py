"""GRAIN's region terms (Halbe et al., WACV 2026, arXiv 2412.04429; wave-3 reference §2) on the
student's dense features.

GRAIN trains CLIP with three losses: image-caption InfoNCE (``L_ic``), box prediction for described
regions (``L_box``, a DETR decoder with Hungarian matching) and region-description contrast
(``L_rd``, its ``WordContrastiveLoss``: each matched object query against every description of the
batch, cross-entropy, query -> description only). Here the region's box is given, so the box itself
picks the tokens that describe it (no decoder, no matching), and the two region terms are:

- grounding: each phrase must select its box's tokens over the other tokens of its image (the
  other objects' and the background's). With ``p(j | r) = softmax_j(s <t_r, d_j>)`` over the N
  dense tokens ``d_j`` of region r's image, ``L_ground = -mean_r log sum_{j in box r} p(j | r)``
  (multiple-instance: some cells of a box show background, so the box's mass is what counts);
- description alignment (``L_rd``): the box-pooled dense feature ``q_r`` against every phrase of
  the (gathered) batch, ``-log softmax_k(s <q_r, t_k>)`` at the phrase, targets spread over equal
  phrases (GRAIN's descriptions are unique per query; in scenes many objects share a phrase). Each
  row also holds its own phrase with the shape word swapped for every other shape (never a held-out
  word), as negatives only: cliplab's addition, since colour and position alone tell a batch's phrases
  apart (after 100 steps without them, regions were told by colour at 0.95 but by shape at 0.61).

``grain = L_ground + L_rd`` (GRAIN's ``--word_loss_weight 1``); ``L_ic`` is ``clip`` in the spec
(``--objectives clip,grain``). Deviations, said plainly: GRAIN's image embedding is its decoder's
extra query, here the model's own class token (so zero-shot classification is unchanged in kind),
and the dense features are the NACLIP last block's, the ones ``cliplab segment`` reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.dense.box_pool import box_cell_weights, pool_boxes
from cliplab.train.objectives.base import DistContext, Objective, StepFeatures, region_positives, spread

INSIDE = 0.25  # a cell belongs to a box when the box covers at least this share of it


def box_cells(boxes: torch.Tensor, grid: tuple[int, int], patch: float) -> torch.Tensor:
    """(R, h*w) bool: the cells each box (R, 4; input pixels) covers at least ``INSIDE`` of, or, for a
    box smaller than that everywhere, the cell it covers most."""
    share = box_cell_weights(boxes, grid, patch) * box_area_cells(boxes, patch)[:, None]  # covered share of each cell
    inside = share >= INSIDE
    best = F.one_hot(share.argmax(1), share.shape[1]).bool()
    return torch.where(inside.any(1, keepdim=True), inside, best)


def box_area_cells(boxes: torch.Tensor, patch: float) -> torch.Tensor:
    """A box's area in cells (at least a tiny positive number)."""
    return ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / patch**2).clamp_min(1e-6)


def grounding_loss(dense: torch.Tensor, boxes: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, patch: float) -> torch.Tensor:
    """(R,) ``-log sum_{j in box} softmax_j(s <t_r, d_j>)`` over the tokens of each region's image.
    dense: (B, E, h, w) normalised; boxes: (R, 5) row, x0, y0, x1, y1; text: (R, E) normalised."""
    _, _, h, w = dense.shape
    tokens = dense.flatten(2).transpose(1, 2)[boxes[:, 0].long()]  # (R, hw, E)
    logits = scale * torch.einsum("rne,re->rn", tokens, text)
    inside = box_cells(boxes[:, 1:], (h, w), patch)
    return torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~inside, float("-inf")), 1)


class GrainObjective(Objective):
    """``grain``: GRAIN's grounding and region-description terms (see the module docstring)."""

    name = "grain"
    needs = frozenset({"regions", "region_negatives"})

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        regions = feats.regions
        if regions is None:
            raise RuntimeError("grain needs the step's regions; the trainer did not provide them")
        dense = regions.student.dense.float()
        text = F.normalize(regions.text.float(), dim=-1)
        scale = feats.logit_scale.float()
        total = ctx.gather_rows(regions.phrase_ids.new_ones(len(regions.boxes))).sum()
        if int(total) == 0:  # no region anywhere in this step: a zero that keeps the graph
            return dense.sum() * 0.0 + text.sum() * 0.0
        # Each rank sums its regions' grounding terms over the step's region count; DDP's mean of the
        # ranks' gradients is then the one-process gradient of the mean over all regions.
        ground = grounding_loss(dense, regions.boxes, text, scale, regions.patch).sum() * ctx.world_size / total
        queries = F.normalize(pool_boxes(dense, regions.boxes, regions.patch), dim=-1)
        all_queries, all_text = ctx.gather_rows(queries), ctx.gather_rows(text)
        logits = scale * all_queries @ all_text.T
        targets = spread(region_positives(regions.true_ids, regions.phrase_ids, ctx))
        if regions.negatives is not None and regions.negatives.shape[1]:
            # each region's own shape-swapped phrases as extra columns of its row (never targets)
            swapped = F.normalize(regions.negatives.float(), dim=-1)
            extra = (scale * torch.einsum("re,rke->rk", queries, swapped)).masked_fill(~regions.negatives_valid, -1e4)  # padding: no mass (and no 0 * inf)
            extra = ctx.gather_rows(extra)
            logits, targets = torch.cat([logits, extra], 1), torch.cat([targets, torch.zeros_like(extra)], 1)
        align = F.cross_entropy(logits, targets)
        return ground + align
