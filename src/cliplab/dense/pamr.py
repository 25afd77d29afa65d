"""Pixel-adaptive mask refinement (PAMR; Araslanov & Roth 2020, sec. 3.2, eq. 4-5), as NACLIP uses it.

Each pixel's class scores are repeatedly replaced by an average of its neighbours' scores at a few
dilations, weighted by how similar their colours are, so label edges snap to image edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _neighbours(x: Tensor, dilations: Sequence[int]) -> Tensor:
    """(C, H, W) -> (C, K, H, W): the 8 neighbours at each dilation (replicate padding)."""
    pad = max(dilations)
    padded = F.pad(x[None], (pad, pad, pad, pad), mode="replicate")[0]
    h, w = x.shape[-2:]
    return torch.stack([padded[:, pad + dy * d : pad + dy * d + h, pad + dx * d : pad + dx * d + w]
                        for d in dilations for dy, dx in _OFFSETS], dim=1)  # fmt: skip


def pixel_affinity(image: Tensor, dilations: Sequence[int]) -> Tensor:
    """(K, H, W) weights over the neighbours, summing to 1 per pixel (eq. 4: softmax of
    −|I_i − I_j| / (0.1·σ_i), averaged over colour channels)."""
    near = _neighbours(image, dilations)
    sigma = near.std(dim=1, keepdim=True)
    scores = -(near - image[:, None]).abs() / (1e-8 + 0.1 * sigma)
    return torch.softmax(scores.mean(dim=0), dim=0)


def pamr(image: Tensor, probs: Tensor, steps: int = 10, dilations: Sequence[int] = (8, 16)) -> Tensor:
    """Refine class scores ``probs`` (C, H, W) with the colours of ``image`` (3, H, W), ``steps`` times."""
    affinity = pixel_affinity(image.float(), dilations)
    for _ in range(steps):
        probs = (_neighbours(probs, dilations) * affinity[None]).sum(dim=1)
    return probs
