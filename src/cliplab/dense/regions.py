"""Mask classification in the style of OVSeg (Liang et al. 2023): classify each region from its masked crop.

Regions are boolean masks or boxes. Each becomes a square crop around it, with the pixels outside
the mask filled with the model's mean colour (OVSeg ``mask_fill='mean'``), embedded and matched
against the class prompts. A :class:`MaskPrompt` ("mask prompt tuning", OVSeg sec. 3.3) replaces
the ViT tokens of the blank patches by learned tokens at the input and before the first ``depth``
blocks; it is trained on synthetic scenes with the model frozen (:func:`train_mask_prompt`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.adapt.training import frozen
from cliplab.data import synthetic
from cliplab.errors import InputError
from cliplab.files import atomic_target
from cliplab.models.vision_parts import (
    ViTParts,
    input_size,
    pixel_normalisation,
    vision_parts,
)
from cliplab.zeroshot.templates import ensemble_text_weights

Tensor = torch.Tensor


def as_masks(regions, height: int, width: int) -> np.ndarray:
    """(K, H, W) bool masks from masks or (K, 4) boxes ``x0, y0, x1, y1`` in pixels."""
    arr = np.asarray(regions)
    if arr.ndim == 2 and arr.shape[1] == 4 and arr.shape != (height, width):
        masks = np.zeros((len(arr), height, width), dtype=bool)
        for m, (x0, y0, x1, y1) in zip(masks, arr.astype(int)):
            m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
        return masks
    if arr.ndim != 3 or arr.shape[1:] != (height, width):
        raise InputError(f"regions must be (K, {height}, {width}) masks or (K, 4) boxes, got shape {arr.shape}")
    return arr.astype(bool)


def masked_crops(model, image: Image.Image, masks: np.ndarray, expand: float = 0.1) -> tuple[Tensor, Tensor]:
    """Preprocessed crops (K, 3, s, s) with outside pixels at the mean colour, and the crops' masks (K, s, s)."""
    side = input_size(model)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in pixel_normalisation(model))
    rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    crops, crop_masks = [], []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            raise InputError("a region is empty; pass masks with at least one pixel")
        cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
        half = max(ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()) * (1 + expand) / 2
        y0, y1, x0, x1 = (round(v) for v in (cy - half, cy + half, cx - half, cx + half))
        m = torch.from_numpy(mask).float()
        region_rgb = mean.expand(3, y1 - y0, x1 - x0).clone()  # the crop box, outside the image too, at the mean
        region_m = torch.zeros(y1 - y0, x1 - x0)
        sy0, sy1, sx0, sx1 = max(y0, 0), min(y1, m.shape[0]), max(x0, 0), min(x1, m.shape[1])
        inside = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        region_rgb[:, inside[0], inside[1]] = (rgb * m + mean * (1 - m))[:, sy0:sy1, sx0:sx1]
        region_m[inside] = m[sy0:sy1, sx0:sx1]
        crop = F.interpolate(region_rgb[None], size=(side, side), mode="bilinear", align_corners=False)[0]
        crops.append((crop - mean) / std)
        crop_masks.append(F.interpolate(region_m[None, None], size=(side, side), mode="nearest")[0, 0] > 0.5)
    return torch.stack(crops), torch.stack(crop_masks)


class MaskPrompt(torch.nn.Module):
    """Learned tokens (depth, grid cells, width) for the patches a region mask leaves blank."""

    def __init__(self, depth: int, cells: int, width: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Parameter(torch.randn(depth, cells, width) * 0.02)  # OVSeg: std 0.02 init

    def encode(self, model, parts: ViTParts, pixels: Tensor, masks: Tensor) -> Tensor:
        """Image embeddings of crops whose blank patches (no mask pixel inside) carry the learned tokens."""
        x, grid = parts.embed(pixels.to(model.device))
        # a patch is inside when any of its pixels is (OVSeg: average-pool the mask, then ceil)
        inside = (F.adaptive_max_pool2d(masks[:, None].float(), grid).flatten(1) > 0).to(x.dtype)[..., None]
        emb = self.embedding.to(x.device, x.dtype)
        for d, block in enumerate(parts.blocks):
            if d < len(emb):
                x = torch.cat([x[:, :1], x[:, 1:] * inside + emb[d] * (1 - inside)], dim=1)
            x = block(x)
        return parts.head(x)[:, 0]

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        with atomic_target(path) as tmp:
            save_file({"embedding": self.embedding.detach().contiguous()}, str(tmp))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MaskPrompt:
        from safetensors.torch import load_file

        emb = load_file(str(path))["embedding"]
        prompt = cls(*emb.shape)
        prompt.embedding.data.copy_(emb)
        return prompt


def region_embeddings(model, crops: Tensor, masks: Tensor, prompt: MaskPrompt | None = None) -> Tensor:
    """L2-normalised embeddings (K, E) of masked crops."""
    crops = crops.to(model.device, model.input_dtype)  # the module's own precision (weights are cast, not autocast)
    if prompt is None:
        feats = model.image_features(crops)
    else:
        feats = prompt.encode(model, vision_parts(model), crops, masks)
    return F.normalize(feats.float(), dim=-1)


@torch.inference_mode()
def classify_regions(model, image, regions, classes: Sequence[str], templates="default", prompt: MaskPrompt | None = None,
                     expand: float = 0.1) -> np.ndarray:  # fmt: skip
    """(K, C) class probabilities for each region (mask or box) of ``image``."""
    from cliplab.models.base import to_pil

    image = to_pil(image)
    masks = as_masks(regions, image.height, image.width)
    crops, crop_masks = masked_crops(model, image, masks, expand)
    text = torch.from_numpy(ensemble_text_weights(model, list(classes), templates)).to(model.device)
    logits = model.logit_scale * region_embeddings(model, crops, crop_masks, prompt) @ text.T
    return torch.softmax(logits, dim=-1).cpu().numpy()


def foreground_regions(labels: np.ndarray, min_pixels: int = 10) -> list[np.ndarray]:
    """Boolean masks of the connected (8-neighbour) non-background regions of a label map with at least
    ``min_pixels`` pixels."""
    from scipy import ndimage

    components, n = ndimage.label(labels > 0, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    return [components == k for k in range(1, n + 1) if sizes[k] >= min_pixels]


def context_box(mask: np.ndarray, context: float) -> np.ndarray:
    """A square box ``x0, y0, x1, y1`` around a mask, its side ``1 + context`` times the mask's longer side."""
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    half = max(ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()) * (1 + context) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


@torch.inference_mode()
def region_probabilities(model, image: Image.Image, masks: Sequence[np.ndarray], text: Tensor, context: float = 1.0,
                         prompt: MaskPrompt | None = None) -> np.ndarray:  # fmt: skip
    """(K, C) class probabilities of each region from an unmasked square crop around it with ``context``
    (see :func:`context_box`): the proposal-then-classify step of OVSeg, for regions from a dense
    segmentation. ``text``: (C, E) normalised class weights. With a mask ``prompt`` each region is
    classified from its masked crop instead, its blank patches carrying the prompt's tokens (OVSeg's
    mask classification with mask prompt tuning, sec. 3.3)."""
    if prompt is None:
        regions, expand = np.stack([context_box(m, context) for m in masks]), 0.0
    else:
        regions, expand = np.stack(masks), 0.1  # classify_regions' crop margin
    crops, crop_masks = masked_crops(model, image, as_masks(regions, image.height, image.width), expand)
    logits = model.logit_scale * region_embeddings(model, crops, crop_masks, prompt) @ text.to(model.device).T
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def scene_regions(model, n: int, seed: int, split: str, image_size: int = 64,
                  classes: Sequence[str] = synthetic.SHAPES) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Masked crops, crop masks and class indices (into ``classes``) of every object of those classes
    in ``n`` synthetic scenes of 1-2 objects."""
    crops, masks, labels = [], [], []
    for i in range(n):
        record = synthetic.scene(i, seed=seed, image_size=image_size, split=split, max_objects=2)
        keep = [k for k, m in enumerate(record.instance_masks) if m.any() and record.objects[k]["shape"] in classes]
        if not keep:
            continue
        c, m = masked_crops(model, record.image, record.instance_masks[keep])
        crops.append(c)
        masks.append(m)
        labels += [list(classes).index(record.objects[k]["shape"]) for k in keep]
    if not labels:
        raise InputError(f"no object of {', '.join(classes)} in {n} synthetic scenes; name shapes among {', '.join(synthetic.SHAPES)}")
    return torch.cat(crops), torch.cat(masks), torch.tensor(labels)


def tune_mask_prompt(model, crops: Tensor, masks: Tensor, labels: Tensor, text: Tensor, depth: int = 3, steps: int = 100,
                     batch_size: int = 32, lr: float = 1e-2, seed: int = 0) -> MaskPrompt:  # fmt: skip
    """Mask prompt tuning (OVSeg sec. 3.3): the model frozen, only the prompt tokens learn, by the
    cross-entropy of masked crops (N, 3, S, S) with their crop masks against ``text`` (C, E) at ``labels``."""
    parts = vision_parts(model)
    if not isinstance(parts, ViTParts):
        raise InputError("mask prompt tuning needs a ViT image tower")
    cells = (input_size(model) // parts.patch_size) ** 2
    width = parts.embed(crops[:1].to(model.device, model.input_dtype))[0].shape[-1]
    with torch.random.fork_rng(devices=[]):  # the prompt's initialisation is seeded; the caller's RNG is untouched
        torch.manual_seed(seed)
        prompt = MaskPrompt(min(depth, len(parts.blocks)), cells, width).to(model.device)
    opt = torch.optim.Adam(prompt.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    text = text.to(model.device)
    with frozen(model.torch_module):  # the model's own requires_grad flags come back afterwards
        for _ in range(steps):
            idx = torch.randint(0, len(labels), (batch_size,), generator=gen)
            emb = F.normalize(prompt.encode(model, parts, crops[idx].to(model.input_dtype), masks[idx]).float(), dim=-1)
            loss = F.cross_entropy(model.logit_scale * emb @ text.T, labels[idx].to(model.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return prompt.eval()


def train_mask_prompt(model, depth: int = 3, n_scenes: int = 256, steps: int = 100, batch_size: int = 32, lr: float = 1e-2,
                      seed: int = 0, classes: Sequence[str] = synthetic.SHAPES) -> MaskPrompt:  # fmt: skip
    """Mask prompt tuning on synthetic train scenes (:func:`tune_mask_prompt`) against "a photo of a
    {shape}." for ``classes``; objects of other shapes are left out (keep unseen classes unseen)."""
    classes = list(classes)
    crops, masks, labels = scene_regions(model, n_scenes, seed, "train", classes=classes)
    text = torch.from_numpy(ensemble_text_weights(model, classes, "default"))
    return tune_mask_prompt(model, crops, masks, labels, text, depth, steps, batch_size, lr, seed)


@torch.inference_mode()
def region_accuracy(model, n: int = 200, seed: int = 2026, prompt: MaskPrompt | None = None) -> float:
    """Shape accuracy of mask classification over every object of ``n`` synthetic test scenes."""
    crops, masks, labels = scene_regions(model, n, seed, "test")
    text = torch.from_numpy(ensemble_text_weights(model, list(synthetic.SHAPES), "default")).to(model.device)
    emb = torch.cat([region_embeddings(model, crops[i : i + 64], masks[i : i + 64], prompt) for i in range(0, len(labels), 64)])
    return float(((emb @ text.T).argmax(-1).cpu() == labels).float().mean())
