"""Class-agnostic mask proposals: a small trainable query decoder over frozen dense tokens, and the
training-free proposals (connected regions of a dense segmentation).

:class:`MaskProposer` is a Mask2Former-style head cut to one cross-attention layer, as MAFT+'s
offline adaptation (a) describes: ``queries`` learned queries attend to the frozen CLIP tokens
entering the last block (detached, as MAFT+'s decoders read detached backbone features) and
each one's mask is its dot product with a per-pixel embedding (the tokens upsampled, plus a small
convolution over the pixels for boundaries); an objectness logit says whether it is an object.
Training matches queries to ground-truth instances (Hungarian, on the mask cost) and applies
binary cross-entropy and dice to the matched masks and objectness to every query (Mask2Former's
mask and no-object losses). Pixels of ignored instances (classes outside the training vocabulary)
count in no loss: they are neither object nor background.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


class MaskProposer(nn.Module):
    """Queries -> (Q, H, W) mask logits and (Q,) objectness logits from tokens (B, D, h, w) and pixels (B, 3, H, W)."""

    def __init__(self, token_dim: int, dim: int = 32, queries: int = 8, heads: int = 4) -> None:
        super().__init__()
        self.config = {"token_dim": token_dim, "dim": dim, "queries": queries, "heads": heads}
        self.tokens = nn.Conv2d(token_dim, dim, 1)
        self.pixels = nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1))
        self.pixel_embed = nn.Conv2d(dim, dim, 1)
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.objectness = nn.Linear(dim, 1)

    def forward(self, tokens: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
        t = self.tokens(tokens.float())
        memory = t.flatten(2).transpose(1, 2)
        q = self.queries.expand(len(t), -1, -1)
        q = self.norm(q + self.attend(q, memory, memory, need_weights=False)[0])
        q = q + self.ffn(q)
        upsampled = F.interpolate(t, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        embed = self.pixel_embed(F.relu(upsampled + self.pixels(pixels.float())))
        return torch.einsum("bqc,bchw->bqhw", q, embed), self.objectness(q)[..., 0]


def dice_loss(logits: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
    """1 - dice of sigmoid(logits) (..., P) against targets over the ``valid`` pixels."""
    p = logits.sigmoid() * valid
    return 1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + (targets * valid).sum(-1) + 1)


def pixel_bce(logits: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
    """Mean binary cross-entropy over the ``valid`` pixels (last axis)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce * valid).sum(-1) / valid.sum(-1).clamp_min(1)


def match(mask_logits: Tensor, targets: Tensor, valid: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of queries (Q, P) to instances (K, P) on BCE + dice cost over valid pixels."""
    from scipy.optimize import linear_sum_assignment

    with torch.no_grad():
        q, k = mask_logits[:, None], targets[None]
        cost = pixel_bce(q.expand(-1, len(targets), -1), k.expand(len(mask_logits), -1, -1), valid) + dice_loss(q, k, valid)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows, cols


def proposer_loss(mask_logits: Tensor, objectness: Tensor, instances: list[Tensor], ignore: Tensor, no_object_weight: float = 0.1) -> Tensor:
    """Mean over images of matched-mask BCE + dice and every query's objectness BCE, the unmatched
    queries' terms weighted by ``no_object_weight`` (Mask2Former's ``eos_coef`` 0.1: most queries
    match nothing, and unweighted they keep every objectness below one half).

    mask_logits (B, Q, H, W), objectness (B, Q); ``instances``: per image (K, H, W) float targets of
    the kept instances; ``ignore`` (B, H, W) bool pixels no loss sees.
    """
    total = mask_logits.new_zeros(())
    for logits, obj, targets, skip in zip(mask_logits, objectness, instances, ignore):
        valid = (~skip).flatten().float()
        flat = logits.flatten(1)
        is_object = torch.zeros_like(obj)
        if len(targets):
            rows, cols = match(flat, targets.flatten(1), valid)
            picked, wanted = flat[rows], targets.flatten(1)[cols]
            total = total + (pixel_bce(picked, wanted, valid) + dice_loss(picked, wanted, valid)).mean()
            is_object[rows] = 1.0
        weight = torch.where(is_object > 0, 1.0, no_object_weight)
        total = total + (weight * F.binary_cross_entropy_with_logits(obj, is_object, reduction="none")).sum() / weight.sum()
    return total / len(mask_logits)


def select_masks(mask_logits: Tensor, objectness: Tensor, min_score: float = 0.5, min_pixels: int = 4,
                 max_overlap: float = 0.8) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Binary masks (K, H, W) and scores (K,) of one image's queries whose objectness is at least
    ``min_score``, most confident first, dropping masks smaller than ``min_pixels`` or covered more
    than ``max_overlap`` by a kept one (a plain mask NMS)."""
    scores = objectness.sigmoid()
    masks = mask_logits.sigmoid() > 0.5
    kept: list[int] = []
    for q in scores.argsort(descending=True).tolist():
        area = int(masks[q].sum())
        if scores[q] < min_score or area < min_pixels:
            continue
        if any(int((masks[q] & masks[k]).sum()) > max_overlap * area for k in kept):
            continue
        kept.append(q)
    return masks[kept].cpu().numpy(), scores[kept].detach().cpu().numpy()
