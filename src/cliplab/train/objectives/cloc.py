"""CLOC's region losses (Chen et al., "Contrastive Localized Language-Image Pre-training", ICML 2025,
arXiv 2410.02746): the Prompter (:mod:`cliplab.dense.prompter`) turns each box into a region
embedding and each phrase into a box, and

    L_cloc   = L_region + L_ground                          (the paper's L = L_CLIP + lambda (L_region + L_ground), lambda = 1;
                                                             L_CLIP is the ``clip`` objective: ``--objectives clip,cloc``)
    L_region = 1/2 [CE(s R T^T, Y) + CE(s T R^T, Y)]        region-text InfoNCE over every region of the gathered batch:
                                                             R (M, D) normalised region embeddings, T (M, D) their phrases',
                                                             Y spread over regions with the same phrase (multi-positive,
                                                             as FarSLIP's MPCL; equal phrases are not negatives)
    L_ground = mean_m |b^_m - b_m|_1 + (1 - GIoU(b^_m, b_m))  the phrase prompt's box b^ (cx, cy, w, h in [0, 1]) against the
                                                             region's box b (L1 on cx, cy, w, h; GIoU on corners, as DETR)

with s the model's logit scale. The reference (cliplab wave3 §1) notes the paper's exact grounding
loss and weights are unverified; without L_ground the prompter can ignore the box (§1, pitfalls).

With ``prompter="masked-class"`` (``--prompter masked-class``) the region embeddings are the tower's own
box class tokens (:mod:`cliplab.dense.masked_class`: no parameters, the box is an attention mask) and
L_cloc = L_region: that prompter cannot ignore the box and has no phrase-to-box head, so L_ground has
nothing to train; the region loss trains the image tower itself.
The prompter's parameters live here, so the trainer optimises and checkpoints them with the
objective; ``Trainer.save_model`` writes them beside the model for ``Model.encode_regions``.
"""

from __future__ import annotations

import copy

import torch
from torchvision.ops import generalized_box_iou_loss

from cliplab.dense.masked_class import MASKED_CLASS, MaskedClassPrompter, box_class_tokens_from
from cliplab.dense.prompter import Prompter, cxcywh_to_xyxy, xyxy_to_cxcywh
from cliplab.train.objectives.base import (
    DistContext,
    Objective,
    StepFeatures,
    multi_positive_infonce,
    normalise,
    region_positives,
)


def grounding_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_ground: mean L1 over (cx, cy, w, h) plus mean (1 - GIoU); both (M, 4) cx, cy, w, h in [0, 1]."""
    l1 = (predicted - target).abs().sum(-1).mean()
    giou = generalized_box_iou_loss(cxcywh_to_xyxy(predicted), cxcywh_to_xyxy(target), reduction="mean")
    return l1 + giou


class ClocObjective(Objective):
    name = "cloc"
    needs = frozenset({"regions"})
    lr_scale = 30.0  # the prompter starts from scratch on a trained tower (post-training lr 1e-4 would barely move it)

    def __init__(self, prompter: str = "block") -> None:
        super().__init__()
        self.kind = prompter  # "block" (CLOC's Prompter) or MASKED_CLASS
        self.region_prompter: Prompter | MaskedClassPrompter | None = None

    def attach_regions(self, model, parts) -> None:
        """The prompter: the model's own when it is of this kind (a CLOC-trained folder trains on), else a new one."""
        own = getattr(model, "region_prompter", None)
        if self.kind == MASKED_CLASS:
            self.region_prompter = MaskedClassPrompter()
        elif isinstance(own, Prompter):
            self.region_prompter = copy.deepcopy(own).train()
        else:
            width = int(parts.ln_1.normalized_shape[-1])
            self.region_prompter = Prompter(width, parts.num_heads, model.embed_dim)

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        r = feats.regions
        if self.kind == MASKED_CLASS:
            embedded = box_class_tokens_from(r.parts, r.student.block_inputs, r.student.grid, r.boxes)  # the step's own pass
            ground = None
        else:
            tokens = r.student.tokens
            embedded = self.region_prompter.region(tokens, r.boxes, r.side, r.parts.head)
            target = xyxy_to_cxcywh((r.boxes[:, 1:].float() / r.side).clamp(0, 1))
            ground = ctx.gather_rows(self.region_prompter.ground(tokens, r.boxes[:, 0], r.text).float()), ctx.gather_rows(target)
        regions, phrases = ctx.gather_rows(normalise(embedded)), ctx.gather_rows(normalise(r.text))
        if len(regions) == 0:  # no region in the whole batch: a zero that still reaches every parameter
            return regions.sum() * 0 + (0 if ground is None else ground[0].sum() * 0)
        positives = region_positives(r.true_ids, r.phrase_ids, ctx)
        loss = multi_positive_infonce(regions, phrases, positives, feats.logit_scale)
        return loss if ground is None else loss + grounding_loss(*ground)
