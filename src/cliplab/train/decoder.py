"""A small conditional image decoder on CLIP image embeddings: the default of un²CLIP's two generators.

un²CLIP (Li et al., arXiv 2505.24517) fine-tunes CLIP's image encoder through a frozen unCLIP generator,
an image model conditioned on the CLIP image embedding. ``cliplab.train.diffusion`` is that generator as
a small conditional DDPM; this module is the simpler one, a **deterministic regression decoder**: embedding ->
64x64 RGB, trained by mean squared error, i.e. the negative log-likelihood of a Gaussian with fixed
variance around the decoded image. It answers the same question as unCLIP's denoising loss (how much of
the image can be recovered from the embedding alone?) in one forward pass, so it trains in minutes on a
CPU; it predicts the conditional mean rather than sampling, which un²CLIP's gradient does not need. With no
noisy image to read from, it must take every object's colour and place from the embedding, which is what
makes tuning through it teach the tower detail (README, un²CLIP).

Architecture: the embedding is projected to a 4x4 feature map, then three up-sampling residual blocks
(4 -> 8 -> 16 -> 32 px), each modulated by the embedding through FiLM (Perez et al., AAAI 2018:
``h * (1 + gamma(c)) + beta(c)``) after a GroupNorm; the head up-samples bilinearly to 64 px and a 3x3
convolution gives the three channels (a block at 64 px would cost as much as all the others on a CPU). Only the
global embedding conditions it, never patch tokens (GenHancer, arXiv 2503.19480: local tokens make
reconstruction trivial). unCLIP-style noise augmentation of the condition (Ramesh et al. 2022; Stable
unCLIP's ``noise_level``) is :func:`augment`.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

DECODER_SIZE = 64  # pixels per side of what the decoder draws


class FiLMBlock(nn.Module):
    """Up-sample x2, conv, GroupNorm, FiLM from the condition, SiLU, conv; plus a 1x1 skip."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(min(8, c_out), c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.norm(self.conv1(x)) * (1 + gamma) + beta
        return self.skip(x) + self.conv2(F.silu(h))


class EmbeddingDecoder(nn.Module):
    """L2-normalised image embedding (B, D) -> image (B, 3, 64, 64) in the CLIP model's normalised pixel space."""

    def __init__(self, embed_dim: int, width: int = 16) -> None:
        super().__init__()
        self.embed_dim, self.width = embed_dim, width
        chans = (4 * width, 4 * width, 2 * width, width)  # at 4, 8, 16, 32 px
        self.cond = nn.Sequential(nn.Linear(embed_dim, 8 * width), nn.SiLU(), nn.Linear(8 * width, 8 * width))
        self.stem = nn.Linear(embed_dim, chans[0] * 16)
        self.blocks = nn.ModuleList(FiLMBlock(a, b, 8 * width) for a, b in itertools.pairwise(chans))
        self.out = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        cond = self.cond(emb)
        x = self.stem(emb).reshape(len(emb), -1, 4, 4)
        for block in self.blocks:
            x = block(x, cond)
        x = F.interpolate(F.silu(x), size=(DECODER_SIZE, DECODER_SIZE), mode="bilinear", align_corners=False)
        return self.out(x)

    def config(self) -> dict[str, int]:
        return {"embed_dim": self.embed_dim, "width": self.width}


def new_decoder(embed_dim: int, width: int = 32, seed: int = 0, kind: str = "regression", size: int = 32) -> nn.Module:
    """A decoder initialised from ``seed`` (the process's random state is left as it was): ``kind``
    "regression" (:class:`EmbeddingDecoder`, 64 px) or "diffusion" (a DDPM at ``size`` px,
    :class:`cliplab.train.diffusion.DiffusionDecoder`)."""
    from cliplab.train.diffusion import DiffusionDecoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffusionDecoder(embed_dim, width, size) if kind == "diffusion" else EmbeddingDecoder(embed_dim, width)


def decoder_target(pixels: torch.Tensor, size: int = DECODER_SIZE) -> torch.Tensor:
    """What a decoder should draw for a preprocessed batch: the pixels, area-resized to ``size`` x ``size``."""
    if pixels.shape[-1] == size and pixels.shape[-2] == size:
        return pixels.float()
    return F.interpolate(pixels.float(), size=(size, size), mode="area")


def augment(emb: torch.Tensor, noise: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """unCLIP-style noise augmentation of an L2-normalised embedding: add Gaussian noise of total norm about
    ``noise`` (per dimension ``noise / sqrt(D)``) and normalise again; ``noise`` 0 returns ``emb``."""
    if noise <= 0:
        return emb
    eps = torch.randn(emb.shape, generator=generator, device="cpu").to(emb.device, emb.dtype)
    return F.normalize(emb + eps * (noise / emb.shape[-1] ** 0.5), dim=-1)


def pooled(images: torch.Tensor, size: int) -> torch.Tensor:
    """``images`` area-averaged to ``size`` x ``size`` (unchanged at their own size)."""
    return images if images.shape[-1] == size else F.adaptive_avg_pool2d(images, size)


def reconstruction_loss(decoder: nn.Module, emb: torch.Tensor, target: torch.Tensor, loss_size: int = DECODER_SIZE) -> torch.Tensor:
    """Mean squared error of the decoded image against ``target``, both area-averaged to ``loss_size`` px:
    the negative log-likelihood (up to constants) of a Gaussian with fixed variance on those cell means.
    Below 64 px, background texture (stripes, checks, noise) averages out and the objects' colours and
    places carry the loss."""
    return F.mse_loss(pooled(decoder(emb), loss_size), pooled(target, loss_size))
