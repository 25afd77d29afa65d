"""CLOC's Prompter (Chen et al., "Contrastive Localized Language-Image Pre-training", ICML 2025,
arXiv 2410.02746, §3): a box (or a phrase) becomes a prompt token that reads the image tower's tokens.

    prompt = Linear(fourier(box / side))              box prompt (positional encoding of x0, y0, x1, y1)
    prompt = Linear(t / |t|)                          text prompt (grounding: a phrase embedding)
    h      = Block([prompt ; class token ; patches])  one pre-norm transformer block of the tower's width; a box
                                                      prompt's attention logits get log(covered share of each cell + 0.05)
    region = head(h[prompt])                          the tower's own final norm + projection -> (R, D)
    box    = sigmoid(MLP_3(h[prompt]))                cx, cy, w, h in [0, 1] (grounding head)

The paper has no public code; the shapes above follow cliplab's reference (wave3 §1, "offline
adaptation"), plus that box prior on the attention: cliplab's addition, since learning where a box is
from positions alone is slow at post-training scale (150 steps of shapes-vit, prompter at 10x lr: 0.619
without it, 0.663 with; benchmarks/cloc_regions.py). Only the prompt position's output is read, so
the block computes that row alone: the prompt attends over itself and every image token, exactly as
row 0 of the full block would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from cliplab.dense.box_pool import box_cell_cover
from cliplab.errors import ModelLoadError
from cliplab.files import atomic_write

Tensor = torch.Tensor
FLOOR = 0.05  # a cell outside the box keeps this share of a covered cell's attention weight (the box is a prior, not a wall)
FREQUENCIES = 8  # sin/cos of 2^k * pi * x, k < 8: the finest period is 1/128 of the side (a 64-px input has 1-px detail)


def fourier_features(x: Tensor, frequencies: int = FREQUENCIES) -> Tensor:
    """(..., C) in [0, 1] -> (..., C * (1 + 2 * frequencies)): x, sin(2^k pi x), cos(2^k pi x) (NeRF's positional encoding)."""
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=x.device, dtype=torch.float32)
    angles = (x.float()[..., None] * scales).flatten(-2)
    return torch.cat([x.float(), angles.sin(), angles.cos()], dim=-1)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_bias(unit_boxes: Tensor, cells: int) -> Tensor:
    """(R, 2 + cells) attention logits added for a box prompt over [prompt ; class token ; patches]: 0 for
    the first two, log(covered share of the cell + FLOOR) for each patch (square grid). ``unit_boxes`` (R, 4) in [0, 1]."""
    n = math.isqrt(cells)
    cover = box_cell_cover(unit_boxes.float() * n, (n, n), 1.0)  # in cells
    return torch.cat([cover.new_zeros(len(cover), 2), torch.log(cover + FLOOR)], dim=1)


class Prompter(torch.nn.Module):
    """Box or phrase prompt -> one transformer block over the image tokens -> region embedding or box."""

    def __init__(self, width: int, heads: int, embed_dim: int, frequencies: int = FREQUENCIES) -> None:
        super().__init__()
        self.width, self.heads, self.embed_dim, self.frequencies = width, heads, embed_dim, frequencies
        self.box_prompt = torch.nn.Linear(4 * (1 + 2 * frequencies), width)
        self.text_prompt = torch.nn.Linear(embed_dim, width)
        self.ln_1 = torch.nn.LayerNorm(width)
        self.attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width))
        self.box_head = torch.nn.Sequential(
            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 4)
        )

    def attend(self, prompt: Tensor, tokens: Tensor, bias: Tensor | None = None) -> Tensor:
        """(R, W) prompt tokens, (R, L, W) the image tokens each reads -> (R, W): the prompt row of one
        pre-norm block over [prompt ; tokens]; ``bias`` (R, 1+L) is added to the prompt's attention logits."""
        x = prompt[:, None].to(self.ln_1.weight.dtype)
        seq = self.ln_1(torch.cat([x, tokens.to(x.dtype)], dim=1))
        mask = None if bias is None or not len(bias) else bias.to(x.dtype).repeat_interleave(self.heads, 0)[:, None, :]
        x = x + self.attn(seq[:, :1], seq, seq, attn_mask=mask, need_weights=False)[0]
        x = x + self.mlp(self.ln_2(x))
        return x[:, 0]

    def region(self, tokens: Tensor, boxes: Tensor, side: int, head: Callable[[Tensor], Tensor]) -> Tensor:
        """(R, D) unnormalised region embeddings of ``boxes`` (R, 5: image row, x0, y0, x1, y1 in input
        pixels of side ``side``) read from ``tokens`` (B, 1+N, W), through the tower's ``head``."""
        unit = (boxes[:, 1:].float() / side).clamp(0, 1)
        own = tokens[boxes[:, 0].long()]
        prompt = self.box_prompt(fourier_features(unit, self.frequencies))
        out = self.attend(prompt, own, box_bias(unit, own.shape[1] - 1))
        return head(out[:, None].to(tokens.dtype))[:, 0]

    def ground(self, tokens: Tensor, rows: Tensor, text: Tensor) -> Tensor:
        """(R, 4) boxes (cx, cy, w, h in [0, 1]) of phrases ``text`` (R, D) in images ``rows`` of ``tokens``."""
        own = tokens[rows.long()]
        prompt = self.text_prompt(F.normalize(text.to(self.ln_1.weight.dtype), dim=-1))
        return torch.sigmoid(self.box_head(self.attend(prompt, own)))

    def embed(self, model, parts, pixels: Tensor, boxes: Tensor) -> Tensor:
        """(R, D) region embeddings of ``boxes`` (R, 5) in ``pixels``: what ``Model.encode_regions`` calls."""
        x, _ = parts.embed(pixels)
        tokens = parts.last_block(parts.run_blocks(x))
        return self.region(tokens, boxes, int(pixels.shape[-1]), parts.head)


def save_prompter(prompter: Prompter, path: str | os.PathLike) -> Path:
    """``path`` (safetensors): the prompter's weights with its shape in the metadata."""
    meta = {k: str(getattr(prompter, k)) for k in ("width", "heads", "embed_dim", "frequencies")}
    state = {k: v.detach().contiguous() for k, v in prompter.state_dict().items()}
    return atomic_write(path, safetensors_bytes(state, metadata=meta))


def load_prompter(path: str | os.PathLike, device=None) -> Prompter:
    """The prompter :func:`save_prompter` wrote, in eval mode on ``device``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        prompter = Prompter(*(int(meta[k]) for k in ("width", "heads", "embed_dim", "frequencies")))
        prompter.load_state_dict(load_file(str(path)))
    except (OSError, SafetensorError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load the region prompter {path}: {exc}") from exc
    return prompter.to(device).eval()


def named_prompter(folder: str | os.PathLike, name: str, device=None) -> torch.nn.Module:
    """The prompter a model folder's manifest (or a bundled model's config) names: ``"masked-class"``
    (:mod:`cliplab.dense.masked_class`, no weights) or the file of CLOC's prompter in ``folder``."""
    from cliplab.dense.masked_class import MASKED_CLASS, MaskedClassPrompter

    return MaskedClassPrompter() if name == MASKED_CLASS else load_prompter(Path(folder) / name, device)
