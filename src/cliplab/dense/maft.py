"""MAFT+ (Jiao et al., ECCV 2024): the pieces of collaborative vision-text optimisation.

- :class:`ContentDependentTransfer` (CDT): each class's text embedding attends to the image's
  projected patch tokens (plus a 2-D sine position encoding) and takes the result as a residual.
- :func:`pod` / :func:`representation_compensation` (RC): pooled-output distillation keeps the
  fine-tuned image tower's feature map close to the frozen one's, rc = 0.1 · SmoothL1(POD(relu F),
  POD(relu F_t)) (``representation_compensation.py``).
- :func:`mask_aware_loss` (MAFT's MA loss): a proposal's probability of an instance's class follows
  its IoU with the instance, min-max normalised over proposals (``mask_aware_loss.py``).
- :func:`mask_pool`: proposal embeddings as mask-weighted means of dense features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def sine_position_encoding(dim: int, grid: tuple[int, int]) -> Tensor:
    """(h*w, dim) 2-D sine encoding (DETR's ``PositionEmbeddingSine``, normalised positions, temperature
    10000): half the channels for y, half for x, sin and cos interleaved."""
    h, w = grid
    half = dim // 2
    ys = (torch.arange(h, dtype=torch.float32) + 1) / h * 2 * math.pi
    xs = (torch.arange(w, dtype=torch.float32) + 1) / w * 2 * math.pi
    freq = 10000 ** (2 * (torch.arange(half) // 2) / half)
    ey, ex = ys[:, None] / freq, xs[:, None] / freq  # (h, half), (w, half)
    ey = torch.stack([ey[:, 0::2].sin(), ey[:, 1::2].cos()], dim=2).flatten(1)
    ex = torch.stack([ex[:, 0::2].sin(), ex[:, 1::2].cos()], dim=2).flatten(1)
    enc = torch.cat([ey[:, None].expand(h, w, half), ex[None].expand(h, w, half)], dim=2)
    return F.pad(enc, (0, dim - 2 * half)).flatten(0, 1)


class ContentDependentTransfer(nn.Module):
    """text (B, C, E), image tokens (B, E, h, w) -> per-image classifier (B, C, E), L2-normalised.

    t' = t + Linear(LN(MHA(q=t, k=img+PE, v=img))) with the Linear starting at zero, so an untrained
    transfer is the identity (MAFT+'s panoptic arrangement: the norm on the residual branch, the
    output projection zero-initialised). Unlike MAFT+ the result is re-normalised: an un-normalised
    output times the logit scale gives the peaky logits the reference warns about.
    """

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.config = {"dim": dim, "heads": heads}
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, text: Tensor, image: Tensor) -> Tensor:
        tokens = image.flatten(2).transpose(1, 2)
        keys = tokens + sine_position_encoding(tokens.shape[-1], image.shape[-2:]).to(tokens)
        attended = self.attend(text, keys, tokens, need_weights=False)[0]
        return F.normalize(text + self.out(self.norm(attended)), dim=-1)


def pod(x: Tensor, scales: tuple[int, ...] = (1, 2, 4)) -> Tensor:
    """Pooled-output distillation embedding (B, C·Σ2s) of a map (B, C, h, w): for each scale s the map
    average-pooled with kernel (h/s, w/s), then its sums along the width and along the height, concatenated."""
    out = []
    for s in scales:
        pooled = F.avg_pool2d(x, kernel_size=(x.shape[-2] // s, x.shape[-1] // s))
        out += [pooled.sum(-1).flatten(1), pooled.sum(-2).flatten(1)]
    return torch.cat(out, dim=1)


def representation_compensation(tuned: Tensor, frozen: Tensor, weight: float = 0.1) -> Tensor:
    """MAFT+ RC: weight · SmoothL1(POD(relu(tuned)), POD(relu(frozen))) for (B, C, h, w) maps."""
    return weight * F.smooth_l1_loss(pod(F.relu(tuned)), pod(F.relu(frozen.detach())))


def mask_pool(features: Tensor, masks: Tensor) -> Tensor:
    """Embeddings (B, K, E) of masks (B, K, H, W) in [0, 1] over features (B, E, h, w): the masks resized
    to the feature grid, then mask-weighted means; L2-normalised."""
    small = F.interpolate(masks.float(), size=features.shape[-2:], mode="bilinear", align_corners=False)
    pooled = torch.einsum("bkhw,behw->bke", small, features) / small.sum((-2, -1))[..., None].clamp_min(1e-6)
    return F.normalize(pooled, dim=-1)


def soft_iou(mask_probs: Tensor, target: Tensor) -> Tensor:
    """Soft IoU (Q,) of probabilities (Q, P) with one binary target (P,)."""
    inter = (mask_probs * target).sum(-1)
    return inter / (mask_probs.sum(-1) + target.sum(-1) - inter).clamp_min(1e-6)


def mask_aware_loss(logits: Tensor, mask_logits: Tensor, targets: Tensor, labels: Tensor) -> Tensor:
    """MAFT's mask-aware loss for one image: proposals' class logits (Q, C), their mask logits (Q, P),
    instance targets (K, P) and labels (K,): mean over k of SmoothL1(softmax(logits)[:, y_k], IoU_k)
    with IoU_k the proposals' soft IoU with instance k, min-max normalised over proposals, detached."""
    probs = logits.softmax(-1)
    loss = logits.new_zeros(())
    for target, label in zip(targets, labels):
        iou = soft_iou(mask_logits.sigmoid(), target).detach()
        iou = (iou - iou.min()) / (iou.max() - iou.min()).clamp_min(1e-6)
        loss = loss + F.smooth_l1_loss(probs[:, label], iou)
    return loss / max(1, len(labels))
