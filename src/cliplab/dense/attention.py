"""The training-free last-block variants, each a small function over the block's q/k/v.

Every function takes per-head ``q, k, v`` of shape (B, heads, L, d) for L = 1 + h*w tokens (the
class token, or a ResNet pool's mean token, first) and the patch ``grid`` (h, w), and returns the
attention output (B, heads, L, d). :data:`METHODS` says, per method, whether the block keeps its
residual connection and its feed-forward network around that output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from cliplab.errors import InputError

Tensor = torch.Tensor


def _softmax_scores(a: Tensor, b: Tensor) -> Tensor:
    """softmax(a·bᵀ / sqrt(d)) over the last axis."""
    return torch.softmax(a @ b.transpose(-2, -1) * a.shape[-1] ** -0.5, dim=-1)


def vanilla_attention(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, int]) -> Tensor:
    """CLIP's own attention, softmax(q·kᵀ/√d)·v (Vaswani et al. 2017, eq. 1)."""
    return _softmax_scores(q, k) @ v


def value_attention(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, int]) -> Tensor:
    """MaskCLIP (Zhou et al. 2022, sec. 3.2): each token attends only to itself, so the output is v."""
    return v


def sclip_attention(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, int]) -> Tensor:
    """SCLIP correlative self-attention (Wang et al. 2024, eq. 5): (softmax(q·qᵀ) + softmax(k·kᵀ))·v."""
    return (_softmax_scores(q, q) + _softmax_scores(k, k)) @ v


def clearclip_attention(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, int]) -> Tensor:
    """ClearCLIP self-self attention (Lan et al. 2024, sec. 3.3): softmax(q·qᵀ/√d)·v."""
    return _softmax_scores(q, q) @ v


def gaussian_neighbourhood(grid: tuple[int, int], std: float, device=None) -> Tensor:
    """(h*w, h*w) prior ω_ij = exp(-‖p_i − p_j‖² / 2σ²) over patch positions (NACLIP, Hajimiri et al. 2025, eq. 6)."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()
    return torch.exp(-torch.cdist(pos, pos).square() / (2 * std**2))


def naclip_attention(q: Tensor, k: Tensor, v: Tensor, grid: tuple[int, int], std: float = 5.0) -> Tensor:
    """NACLIP neighbourhood attention (eq. 7): softmax(k·kᵀ/√d + ω)·v, ω the Gaussian prior
    between patches (zero for the class token's row and column)."""
    scores = k @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
    prior = torch.zeros(scores.shape[-2:], dtype=scores.dtype, device=scores.device)
    prior[1:, 1:] = gaussian_neighbourhood(grid, std, scores.device).to(scores.dtype)
    return torch.softmax(scores + prior, dim=-1) @ v


@dataclass(frozen=True)
class LastBlock:
    """How a method rewrites a ViT's last block: the attention, and whether residual/FFN stay."""

    attention: Callable[..., Tensor]
    residual: bool
    ffn: bool


METHODS: dict[str, LastBlock] = {
    "vanilla": LastBlock(vanilla_attention, residual=True, ffn=True),
    "maskclip": LastBlock(value_attention, residual=True, ffn=True),
    "sclip": LastBlock(sclip_attention, residual=True, ffn=True),
    "clearclip": LastBlock(clearclip_attention, residual=False, ffn=False),
    "naclip": LastBlock(naclip_attention, residual=False, ffn=False),
}


def last_block(method: str, naclip_std: float = 5.0) -> LastBlock:
    """The :class:`LastBlock` for ``method`` (``naclip_std``: the Gaussian's σ in patches)."""
    if method not in METHODS:
        raise InputError(f"unknown dense method {method!r}; use one of {', '.join(METHODS)}")
    block = METHODS[method]
    if method == "naclip":
        return LastBlock(partial(naclip_attention, std=naclip_std), block.residual, block.ffn)
    return block
