"""CLIP's symmetric InfoNCE (Radford et al. 2021, Fig. 3) with open_clip's distributed semantics.

Features are gathered with open_clip's ``gather_features`` (``local_loss``, ``gather_with_grad``).
Pairs with the same caption text are positives of each other (soft targets spread over them)
instead of false negatives; with distinct captions this is exactly open_clip's ``ClipLoss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import (
    DistContext,
    Objective,
    StepFeatures,
    normalise,
    soft_targets,
)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``factor`` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def gathered(feats: StepFeatures, ctx: DistContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(local image, local text, all images, all texts), normalised, gathered the open_clip way.

    Without ``local_loss`` and ``gather_with_grad`` every rank computes the global loss but
    back-propagates only into its own features, so DDP's average would hold 1/world of their
    gradient: it is multiplied back here, on the features alone (the logit scale, used alike
    on every rank, already gets its full gradient everywhere).
    """
    image, text = normalise(feats.image), normalise(feats.text)
    if ctx.world_size == 1:
        return image, text, image, text
    from open_clip.loss import gather_features

    if not ctx.local_loss and not ctx.gather_with_grad:
        image, text = _ScaleGrad.apply(image, float(ctx.world_size)), _ScaleGrad.apply(text, float(ctx.world_size))
    all_image, all_text = gather_features(image, text, ctx.local_loss, ctx.gather_with_grad, ctx.rank, ctx.world_size)
    return image, text, all_image, all_text


class ClipObjective(Objective):
    name = "clip"

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        image, text, all_image, all_text = gathered(feats, ctx)
        all_ids = ctx.gather_ids(feats.caption_ids)
        scale = feats.logit_scale
        if ctx.local_loss:
            b = image.shape[0]
            row_ids = all_ids[ctx.rank * b : (ctx.rank + 1) * b]
            logits_image, logits_text = scale * image @ all_text.T, scale * text @ all_image.T
        else:
            row_ids = all_ids
            logits_image = scale * all_image @ all_text.T
            logits_text = logits_image.T
        if feats.logit_bias is not None:
            logits_image, logits_text = logits_image + feats.logit_bias, logits_text + feats.logit_bias
        targets = soft_targets(row_ids, all_ids)
        loss = (F.cross_entropy(logits_image, targets) + F.cross_entropy(logits_text, targets)) / 2
        return loss
