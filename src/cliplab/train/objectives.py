"""Contrastive objectives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_positive_clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021, Fig. 3) where pairs that share a caption are
    all positives.

    ``text_ids[i]`` identifies the caption of pair i; pairs with equal ids are treated as matches
    in both directions (soft targets spread evenly over them) instead of as false negatives, which
    matters when short captions repeat inside a batch. With distinct ids this is exactly
    open_clip's ``ClipLoss``.
    """
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    logits = logit_scale * image_emb @ text_emb.T
    same = (text_ids[:, None] == text_ids[None, :]).float()
    targets = same / same.sum(1, keepdim=True)
    loss_i2t = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
    loss_t2i = torch.sum(-targets * F.log_softmax(logits.T, dim=1), dim=1).mean()
    return (loss_i2t + loss_t2i) / 2
