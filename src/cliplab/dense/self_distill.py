"""Region self-distillation of a ViT's dense features (CLIPSelf, Wu et al. 2024; DeCLIP's "content" branch).

A ViT CLIP's class token knows what a whole image shows, its patch tokens much less. Here the
model teaches its own patches: for random patch-aligned boxes, the dense features that a chosen
last-block ``method`` (:mod:`cliplab.dense.attention`) gives, averaged over the box, are pulled
towards the frozen model's image embedding of the box cropped and resized to the input size
(CLIPSelf eq. 2: 1 - cos). A second cosine term keeps the whole-image embedding where the frozen
model had it, so zero-shot classification is unchanged. No labels or masks are used: only images.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from cliplab.dense.features import dense_features
from cliplab.errors import InputError
from cliplab.models.vision_parts import ViTParts, input_size, vision_parts

Tensor = torch.Tensor


@dataclass
class DistillLog:
    """Per-step losses of :func:`distill_regions`: region (1 - cos of box means) and global (1 - cos)."""

    region: list[float] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)


def random_boxes(batch: int, per_image: int, grid: tuple[int, int], sides: tuple[int, int], gen: torch.Generator) -> Tensor:
    """(batch * per_image, 5) square boxes ``image index, x0, y0, x1, y1`` in patch units, their side
    drawn from ``sides`` (inclusive) and clipped to the grid."""
    h, w = grid
    side = torch.randint(sides[0], min(sides[1], h, w) + 1, (batch * per_image,), generator=gen)
    y0 = (torch.rand(len(side), generator=gen) * (h - side + 1)).floor()
    x0 = (torch.rand(len(side), generator=gen) * (w - side + 1)).floor()
    index = torch.arange(batch).repeat_interleave(per_image)
    return torch.stack([index.float(), x0, y0, x0 + side, y0 + side], dim=1)


def box_means(feats: Tensor, boxes: Tensor) -> Tensor:
    """(N, E) mean of dense features (B, E, h, w) over each patch-unit box of ``boxes``."""
    _, _, h, w = feats.shape
    ys, xs = torch.arange(h, device=feats.device), torch.arange(w, device=feats.device)
    _, x0, y0, x1, y1 = (c.to(feats.device)[:, None] for c in boxes.T)
    inside = ((ys >= y0) & (ys < y1))[:, :, None] & ((xs >= x0) & (xs < x1))[:, None, :]  # (N, h, w)
    weights = inside.flatten(1).to(feats.dtype)
    weights = weights / weights.sum(1, keepdim=True)
    per_box = feats.flatten(2)[boxes[:, 0].long()]  # (N, E, hw)
    return torch.einsum("neh,nh->ne", per_box, weights)


def box_crops(pixels: Tensor, boxes: Tensor, patch: int, size: int) -> Tensor:
    """The boxes (patch units) cut out of preprocessed ``pixels`` and resized to ``size`` (bilinear)."""
    pixel_boxes = boxes.clone()
    pixel_boxes[:, 1:] *= patch
    return roi_align(pixels, pixel_boxes.to(pixels.device, pixels.dtype), output_size=size, aligned=True, sampling_ratio=1)


def distill_regions(model, images: Callable[[int], Tensor], steps: int = 1000, batch_size: int = 32, boxes_per_image: int = 6,
                    sides: tuple[int, int] = (2, 5), method: str = "naclip", lr: float = 2e-4, seed: int = 0,
                    progress: Callable[[int, float, float], None] | None = None) -> DistillLog:  # fmt: skip
    """Train ``model``'s image tower in place so its ``method`` dense features match its own crops.

    images: step -> a preprocessed (batch_size, 3, s, s) batch. sides: box sides in patches.
    The text tower stays frozen; the frozen copy of the starting image tower is the teacher.
    """
    parts = vision_parts(model)
    if not isinstance(parts, ViTParts):
        raise InputError("region self-distillation trains a ViT's patch tokens; use a ViT model")
    module = model.torch_module
    teacher = copy.deepcopy(module).eval().requires_grad_(False)
    module.float()
    teacher.float()
    flags = [(p, p.requires_grad) for p in module.parameters()]  # the caller's, restored at the end
    for name, p in module.named_parameters():
        p.requires_grad_(name.startswith("visual."))
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    size, log = input_size(model), DistillLog()
    module.train()
    for step in range(steps):
        pixels = images(step).to(model.device, torch.float32)
        with torch.no_grad():
            grid = parts.embed(pixels[:1])[1]
            boxes = random_boxes(len(pixels), boxes_per_image, grid, sides, gen)
            target = F.normalize(teacher.encode_image(box_crops(pixels, boxes, parts.patch_size, size)), dim=-1)
            whole_target = F.normalize(teacher.encode_image(pixels), dim=-1)
        region = F.normalize(box_means(dense_features(model, pixels, method, parts=parts), boxes), dim=-1)
        whole = F.normalize(module.encode_image(pixels), dim=-1)
        region_loss = 1 - (region * target).sum(-1).mean()
        whole_loss = 1 - (whole * whole_target).sum(-1).mean()
        opt.zero_grad()
        (region_loss + whole_loss).backward()
        opt.step()
        log.region.append(float(region_loss.detach()))
        log.whole.append(float(whole_loss.detach()))
        if progress is not None:
            progress(step, log.region[-1], log.whole[-1])
    module.eval()
    for p, flag in flags:
        p.requires_grad_(flag)
    return log
