"""A small conditional DDPM on CLIP image embeddings: un²CLIP's stand-in for unCLIP's generator.

unCLIP (Ramesh et al. 2022) generates images with a diffusion model conditioned on the CLIP image
embedding; un²CLIP (Li et al., arXiv 2505.24517) freezes it and tunes CLIP's image encoder with its
denoising loss. This module is that generator at CPU scale (cliplab's reference, wave3 §14 (5)):

- **Noise schedule**: DDPM's forward process (Ho et al., NeurIPS 2020, eq. 4)
  ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with the cosine schedule of Nichol & Dhariwal
  (ICML 2021, eq. 17): ``abar_t = f(t) / f(0)``, ``f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2)``, ``s = 0.008``,
  betas clipped at 0.999.
- **Denoiser** ``eps_theta(x_t, t, c)``: a UNet (two down-samplings) whose residual blocks are modulated by
  FiLM (Perez et al. 2018) from the sum of a sinusoidal timestep embedding and an embedding of the
  condition ``c`` (ADM's scale-shift norm, Dhariwal & Nichol 2021: ``GroupNorm(h) * (1 + gamma) + beta``).
  ``c`` is only the global CLIP image embedding, never patch tokens (GenHancer, arXiv 2503.19480).
- **Loss**: the simple eps-prediction loss (Ho et al. eq. 14) ``E_{t,eps} ||eps - eps_theta(x_t, t, c)||^2``,
  with ``t`` drawn uniformly from a chosen part of ``[0, T)`` (un²CLIP's fine-tune can favour low-noise
  steps, which carry the detail). unCLIP-style noise augmentation of ``c`` is the caller's
  (:func:`cliplab.train.decoder.augment`).

Images are the CLIP model's normalised pixels area-averaged to ``size`` (32 by default), used as ``x_0``
as they are (they have roughly unit scale).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.errors import InputError

STEPS = 1000  # T, the number of diffusion steps


def cosine_alpha_bars(steps: int = STEPS, s: float = 0.008) -> torch.Tensor:
    """``abar_t`` for ``t = 0..steps-1`` (float64), Nichol & Dhariwal 2021 eq. 17, with each beta clipped at 0.999."""
    grid = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bars: torch.Tensor) -> torch.Tensor:
    """A draw of ``x_t ~ q(x_t | x_0)``: ``sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020, eq. 4)."""
    ab = alpha_bars.to(x0.device)[t].to(x0.dtype)[:, None, None, None]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as DDPM uses it): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; GroupNorm modulated by FiLM from the embedding, SiLU, conv (zero-initialised); skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        gamma, beta = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + gamma) + beta))
        return self.skip(x) + h


class DiffusionDecoder(nn.Module):
    """``eps_theta(x_t, t, c)``: x_t (B, 3, size, size), integer t (B,), L2-normalised embedding c (B, D) -> eps (B, 3, size, size).

    Channels ``width, 2 width, 2 width`` at ``size, size/2, size/4`` px, one residual block per level on
    the way down, a middle block, and one per level on the way up over the concatenated skip."""

    def __init__(self, embed_dim: int, width: int = 16, size: int = 32) -> None:
        super().__init__()
        if size % 4:
            raise InputError(f"diffusion decoder: size must be a multiple of 4, got {size}")
        self.embed_dim, self.width, self.size = embed_dim, width, size
        e = 4 * width
        self.time = nn.Sequential(nn.Linear(width, e), nn.SiLU(), nn.Linear(e, e))
        self.cond = nn.Sequential(nn.Linear(embed_dim, e), nn.SiLU(), nn.Linear(e, e))
        chans = (width, 2 * width, 2 * width)
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.down = nn.ModuleList(ResBlock(a, b, e) for a, b in zip((width, *chans[:-1]), chans))
        self.mid = ResBlock(chans[-1], chans[-1], e)
        self.up = nn.ModuleList(ResBlock(c + c, c_next, e) for c, c_next in zip(chans[::-1], (*chans[::-1][1:], width)))
        self.out = nn.Sequential(nn.GroupNorm(min(8, width), width), nn.SiLU(), nn.Conv2d(width, 3, 3, padding=1))
        self.register_buffer("alpha_bars", cosine_alpha_bars().float(), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.width)) + self.cond(cond)
        h, skips = self.stem(x), []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.avg_pool2d(h, 2), emb)
            skips.append(h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.out(h)

    def loss(self, cond: torch.Tensor, x0: torch.Tensor, generator: torch.Generator,
             t_range: tuple[float, float] = (0.0, 1.0), draws: int = 1) -> torch.Tensor:  # fmt: skip
        """The eps-prediction loss (Ho et al. 2020, eq. 14) at ``draws`` (t, eps) per image, ``t`` uniform over the
        fraction ``t_range`` of the ``STEPS`` steps; ``x0`` at this decoder's size."""
        lo, hi = int(t_range[0] * STEPS), max(int(t_range[0] * STEPS) + 1, int(t_range[1] * STEPS))
        x0, cond = x0.repeat(draws, 1, 1, 1), cond.repeat(draws, 1)
        t = torch.randint(lo, hi, (len(x0),), generator=generator)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        t = t.to(x0.device)
        return F.mse_loss(self(q_sample(x0, t, eps, self.alpha_bars), t, cond), eps)

    def config(self) -> dict[str, int]:
        return {"embed_dim": self.embed_dim, "width": self.width, "size": self.size}
