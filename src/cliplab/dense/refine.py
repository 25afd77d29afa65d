"""A learned refinement in the style of CLIP-DINOiser (Wysoczańska et al. 2024, sec. 3.2-3.3).

Two light heads read CLIP patch tokens from an intermediate layer (the input of the last block by
default), as CLIP-DINOiser's ``obj_proj`` and ``bkg_decoder`` do:

- a 3x3 convolution trained to predict a *teacher*'s patch correlations; at inference its
  predicted correlations, zeroed below ``gamma`` (0.2 as in CLIP-DINOiser), pool the dense
  features: f'_i = Σ_j w_ij f_j / Σ_j w_ij (eq. 2);
- a 1x1 convolution trained to predict an unsupervised foreground map (the paper distils FOUND's
  saliency); at inference a pixel that is not salient and whose best class probability is below
  ``delta`` (0.99 as in CLIP-DINOiser) becomes background.

The correlation teacher is any cliplab model: a ModifiedResNet's stage output (``teacher_layer``
1-4) or a ViT's tokens after ``teacher_layer`` blocks, average-pooled to the student's patch grid.
For the bundled models it is ``cliplab:shapes-tiny``'s second ResNet stage, whose features follow
colour and texture edges; DINO plays that role in the paper. The foreground teacher is the
class-token attention of a ViT block (``saliency_layer``, by default the student's own block before
the last), split at its per-image mean: FOUND starts from the same cue, DINO's class-token
attention, to find the background. No labels are used; trains on synthetic scenes with every model
frozen, on a CPU in a few minutes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.data import synthetic
from cliplab.errors import InputError, brief
from cliplab.files import atomic_target
from cliplab.models.vision_parts import (
    PoolParts,
    ViTParts,
    pixel_normalisation,
    vision_parts,
)

Tensor = torch.Tensor


def intermediate_tokens(model, parts: ViTParts, pixels: Tensor, stop: int) -> Tensor:
    """Patch tokens (B, D, h, w) after the blocks before index ``stop``."""
    x, grid = parts.embed(pixels.to(model.device))
    x = parts.run_blocks(x, stop)[:, 1:]
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid).float()


def normalised(model, pixels01: Tensor) -> Tensor:
    """[0, 1] pixels normalised the way ``model`` expects."""
    mean, std = pixel_normalisation(model)
    return (pixels01 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def teacher_features(teacher, pixels01: Tensor, layer: int, grid: tuple[int, int]) -> Tensor:
    """The teacher's layer features (B, C, h, w) for [0, 1] pixels, average-pooled to ``grid`` and
    centred per image (ReLU features are all positive, so raw cosines would be high everywhere)."""
    x = normalised(teacher, pixels01)
    parts = vision_parts(teacher)
    if isinstance(parts, PoolParts):
        visual = teacher.torch_module.visual
        x = visual.stem(x.to(teacher.device))
        for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4)[:layer]:
            x = stage(x)
        fmap = x
    else:
        fmap = intermediate_tokens(teacher, parts, x, layer)
    pooled = F.adaptive_avg_pool2d(fmap.float(), grid)
    return pooled - pooled.mean(dim=(2, 3), keepdim=True)


def teacher_foreground(teacher, pixels01: Tensor, layer: int, grid: tuple[int, int]) -> Tensor:
    """An unsupervised foreground map (B, h, w) in {0, 1}: where block ``layer``'s class-token attention
    (averaged over heads, then average-pooled to ``grid``) is above its per-image mean."""
    parts = vision_parts(teacher)
    if not isinstance(parts, ViTParts):
        raise InputError("the foreground teacher reads a ViT's class-token attention; use a ViT model")
    x, teacher_grid = parts.embed(normalised(teacher, pixels01).to(teacher.device, teacher.input_dtype))
    index = layer % len(parts.blocks)
    q, k, _ = parts.block_qkv(index, parts.run_blocks(x, index))
    attention = torch.softmax(q[:, :, :1] @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)[:, :, 0, 1:].mean(1)
    attention = F.adaptive_avg_pool2d(attention.float().reshape(-1, 1, *teacher_grid), grid)[:, 0]
    return (attention > attention.mean(dim=(1, 2), keepdim=True)).float()


def correlations(feats: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, hw, hw) cosine similarities between cells."""
    flat = F.normalize(feats.flatten(2), dim=1)
    return flat.transpose(1, 2) @ flat


class CorrelationRefiner(torch.nn.Module):
    """CLIP-DINOiser's two heads: a 3x3 conv predicting patch correlations, with which :meth:`refine`
    pools dense features, and a 1x1 conv predicting where the foreground is.

    layer: the student block index whose input tokens the heads read (-1: the last block's input).
    gamma: correlations below it do not pool. delta: a pixel predicted as background whose best
    class probability is below it becomes background (see :class:`~cliplab.dense.segment.Segmenter`).
    """

    def __init__(self, width: int, dim: int = 64, layer: int = -1, gamma: float = 0.2, delta: float = 0.99) -> None:
        super().__init__()
        self.config = {"width": width, "dim": dim, "layer": layer, "gamma": gamma, "delta": delta}
        self.delta = delta
        self.conv = torch.nn.Conv2d(width, dim, kernel_size=3, padding=1)
        self.objectness = torch.nn.Conv2d(width, 1, kernel_size=1)

    def predict(self, tokens: Tensor) -> Tensor:
        """Predicted correlations (B, hw, hw) from intermediate tokens (B, D, h, w)."""
        return correlations(self.conv(tokens))

    @torch.no_grad()
    def refine(self, model, pixels: Tensor, feats: Tensor, last_input: tuple[Tensor, tuple[int, int]] | None = None) -> tuple[Tensor, Tensor]:
        """Guided pooling of dense features (B, E, h, w) of the crops ``pixels`` (CLIP-DINOiser eq. 2),
        and the predicted foreground probability (B, h, w). ``last_input``: the tokens entering the last
        block and the grid (:func:`~cliplab.dense.features.last_block_input`), reused when the heads read them."""
        parts = vision_parts(model)
        if not isinstance(parts, ViTParts):
            raise InputError("the learned refinement reads ViT tokens; use a ViT model")
        if last_input is not None and self.config["layer"] % len(parts.blocks) == len(parts.blocks) - 1:
            x, grid = last_input
            tokens = x[:, 1:].transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid).float()
        else:
            tokens = intermediate_tokens(model, parts, pixels, self.config["layer"])
        tokens = tokens.to(self.conv.weight.device)
        weights = self.predict(tokens)
        weights = torch.where(weights > self.config["gamma"], weights, torch.zeros_like(weights)).to(feats.device)
        flat = feats.flatten(2)  # (B, E, hw)
        pooled = flat @ weights.transpose(1, 2) / weights.sum(-1)[:, None, :].clamp_min(1e-6)
        foreground = torch.sigmoid(self.objectness(tokens))[:, 0].to(feats.device)
        return F.normalize(pooled, dim=1).reshape(feats.shape), foreground

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        with atomic_target(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp), metadata={"config": json.dumps(self.config)})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CorrelationRefiner:
        """The head :meth:`save` wrote. Only safetensors files are read; nothing is ever unpickled."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        made_by = "write one with `cliplab refiner --out FILE` (cliplab.dense.refine.train_refiner)"
        if not Path(path).is_file():
            raise InputError(f"refinement head {path} does not exist; {made_by}")
        try:
            with safe_open(str(path), "pt") as f:
                config = (f.metadata() or {}).get("config")
            state = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise InputError(f"refinement head {path} is not a safetensors file (other formats are never unpickled); {made_by}") from exc
        if config is None:
            raise InputError(f"{path} is a safetensors file but not a refinement head (no 'config' metadata); {made_by}")
        try:
            head = cls(**json.loads(config))
            head.load_state_dict(state)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"refinement head {path} does not match this cliplab's head ({brief(exc)}); {made_by}") from exc
        return head.eval()


def scene_pixels(n: int, seed: int, image_size: int) -> Tensor:
    """(n, 3, s, s) [0, 1] pixels of train-split synthetic scenes."""
    rng = np.random.default_rng([seed, 424242])
    images = [np.asarray(synthetic.render(synthetic.sample_spec(rng, "train", 2), image_size).image) for _ in range(n)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def train_refiner(model, teacher, n_scenes: int = 512, steps: int = 300, batch_size: int = 32, lr: float = 3e-3,
                  layer: int = -1, teacher_layer: int = 2, image_size: int = 64, seed: int = 0,
                  dim: int = 64, saliency_teacher=None, saliency_layer: int = -2) -> CorrelationRefiner:  # fmt: skip
    """Fit a :class:`CorrelationRefiner` for ``model`` on synthetic scenes (every model frozen).

    ``teacher`` gives the correlations (``teacher_layer``); ``saliency_teacher`` (default: ``model``
    itself) the foreground map, from block ``saliency_layer``'s class-token attention. Student tokens
    and targets are computed once; the heads then train on them with Adam, on the mean-squared error
    of the correlations plus the binary cross-entropy of the foreground.
    """
    parts = vision_parts(model)
    if not isinstance(parts, ViTParts):
        raise InputError("the learned refinement reads ViT tokens; use a ViT model")
    pixels01 = scene_pixels(n_scenes, seed, image_size)
    pixels = normalised(model, pixels01)
    with torch.no_grad():
        tokens = torch.cat([intermediate_tokens(model, parts, pixels[i : i + 64], layer).cpu() for i in range(0, n_scenes, 64)])
        grid = tuple(tokens.shape[-2:])
        target = torch.cat([correlations(teacher_features(teacher, pixels01[i : i + 64], teacher_layer, grid)).cpu()
                            for i in range(0, n_scenes, 64)])  # fmt: skip
        salient = saliency_teacher if saliency_teacher is not None else model
        foreground = torch.cat([teacher_foreground(salient, pixels01[i : i + 64], saliency_layer, grid).cpu() for i in range(0, n_scenes, 64)])
    with torch.random.fork_rng(devices=[]):  # seeds the heads' initialisation, leaves the global RNG as it was
        torch.manual_seed(seed)
        head = CorrelationRefiner(tokens.shape[1], dim=dim, layer=layer)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, n_scenes, (batch_size,), generator=gen)
        loss = F.mse_loss(head.predict(tokens[idx]), target[idx])
        loss = loss + F.binary_cross_entropy_with_logits(head.objectness(tokens[idx])[:, 0], foreground[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.final_loss_ = float(loss.detach())
    return head.eval()
