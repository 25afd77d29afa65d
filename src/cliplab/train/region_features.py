"""What region objectives (CLOC, GRAIN, FarSLIP, DeCLIP, DCLIP) see in a training step.

The trainer runs the student's image tower once up to its last block; from there it gives both the
ordinary image embedding (the unmodified last block, the final norm, the class token's projection:
exactly ``encode_image``) and dense features (the last block as ``method`` rewrites it, see
:mod:`cliplab.dense.attention`; the same features ``cliplab segment`` reads). A :class:`RegionTeacher`
is a frozen model (the starting model, or ``--teacher``) that the distilling objectives read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from cliplab.dense.attention import last_block
from cliplab.dense.features import vit_tokens
from cliplab.errors import InputError
from cliplab.models.vision_parts import ViTParts, input_size, pixel_normalisation, vision_parts

Tensor = torch.Tensor
DENSE_METHOD = "naclip"  # the last block the dense features of a region step go through (the ViT default of `cliplab segment`)


@dataclass
class StudentDense:
    """One pass of the student's image tower: the embedding and what region objectives read."""

    image: Tensor  # (B, D) unnormalised, as encode_image
    block_inputs: list[Tensor]  # (B, 1+N, W) tokens entering each block (class token first)
    tokens: Tensor  # (B, 1+N, W) the unmodified last block's output, before the final norm
    dense: Tensor  # (B, D, h, w) L2-normalised dense features of the rewritten last block
    grid: tuple[int, int]

    @property
    def last_input(self) -> Tensor:
        """(B, 1+N, W) the tokens entering the last block."""
        return self.block_inputs[-1]


def student_pass(parts: ViTParts, pixels: Tensor, method: str = DENSE_METHOD) -> StudentDense:
    """The image embedding and the dense view of ``pixels`` from one run of the blocks."""
    inputs, grid = parts.block_inputs(pixels)
    x = inputs[-1]
    tokens = parts.last_block(x)
    image = parts.head(tokens[:, 0])
    dense, _ = vit_tokens(parts, pixels, last_block(method), last_input=(x, grid))
    dense = F.normalize(dense.float(), dim=-1).transpose(1, 2).reshape(len(pixels), -1, *grid)
    return StudentDense(image, inputs, tokens, dense, grid)


def vit_parts(model) -> ViTParts:
    parts = vision_parts(model)
    if not isinstance(parts, ViTParts):
        raise InputError(f"{model.name}: region objectives train a ViT's patch tokens; start from a ViT model (e.g. cliplab:shapes-vit)")
    return parts


class RegionTeacher:
    """A frozen model the distilling region objectives read (no gradients). It takes the student's
    preprocessed pixels: they are renormalised to the teacher's mean/std and resized to its input."""

    def __init__(self, model, student_norm: tuple[list[float], list[float]]) -> None:
        self.model = model
        self.parts = vit_parts(model)
        self.size = input_size(model)
        mean, std = student_norm
        t_mean, t_std = pixel_normalisation(model)
        shape = (1, 3, 1, 1)
        self._affine = (torch.tensor(std).view(shape) / torch.tensor(t_std).view(shape),
                        (torch.tensor(mean).view(shape) - torch.tensor(t_mean).view(shape)) / torch.tensor(t_std).view(shape))  # fmt: skip

    @property
    def patch(self) -> int:
        return self.parts.patch_size

    def pixels(self, pixels: Tensor, scale: float = 1.0) -> Tensor:
        """The student's pixels as this teacher's input, ``scale`` times its input side."""
        a, b = (t.to(pixels.device) for t in self._affine)
        x = pixels.float() * a + b
        side = round(self.size * scale)
        if x.shape[-1] != side or x.shape[-2] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return x.to(self.model.device, self.model.input_dtype)

    @torch.no_grad()
    def dense(self, pixels: Tensor, method: str = DENSE_METHOD, scale: float = 1.0) -> Tensor:
        """(B, E, h, w) L2-normalised dense features; ``scale`` > 1 runs at a higher resolution (a finer grid)."""
        x = self.pixels(pixels, scale)
        tokens, grid = vit_tokens(self.parts, x, last_block(method))
        return F.normalize(tokens.float(), dim=-1).transpose(1, 2).reshape(len(x), -1, *grid)

    @torch.no_grad()
    def image(self, pixels: Tensor) -> Tensor:
        """(B, E) L2-normalised image embeddings."""
        return F.normalize(self.model.torch_module.encode_image(self.pixels(pixels)).float(), dim=-1)

    @torch.no_grad()
    def crops(self, pixels: Tensor, boxes: Tensor, student_side: int) -> Tensor:
        """(R, E) L2-normalised image embeddings of each box (R, 5: row, x0, y0, x1, y1 in the student's
        input pixels) cut out of the image and resized to the teacher's input."""
        x = self.pixels(pixels)
        scaled = boxes.clone().float()
        scaled[:, 1:] *= x.shape[-1] / student_side
        crops = roi_align(x.float(), scaled.to(x.device), output_size=self.size, aligned=True, sampling_ratio=2)
        return F.normalize(self.model.torch_module.encode_image(crops.to(self.model.input_dtype)).float(), dim=-1)

    @torch.no_grad()
    def in_place(self, pixels: Tensor, boxes: Tensor, student_side: int) -> Tensor:
        """(R, E) L2-normalised image embeddings of each box kept where it is, at the image's scale, every
        pixel outside it set to the image's per-channel median (its background, on scenes of few objects):
        the whole-image view a teacher trained on such scenes knows, where a cut-out box resized to the
        input is not (``crops``)."""
        x = self.pixels(pixels).float()
        side = x.shape[-1]
        b = boxes.float().to(x.device)
        b[:, 1:] *= side / student_side
        centres = torch.arange(side, device=x.device, dtype=torch.float32)
        inside_x = (centres[None] + 1 > b[:, 1:2]) & (centres[None] < b[:, 3:4])  # (R, S): pixels the box touches
        inside_y = (centres[None] + 1 > b[:, 2:3]) & (centres[None] < b[:, 4:5])
        keep = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]  # (R, 1, S, S)
        rows = x[b[:, 0].long()]
        median = rows.flatten(2).median(dim=2).values[:, :, None, None]
        views = torch.where(keep, rows, median)
        return F.normalize(self.model.torch_module.encode_image(views.to(self.model.input_dtype)).float(), dim=-1)


class FrozenPhrases:
    """Text features of region phrases (and their swapped versions) from a frozen text tower, each
    computed once and alone: a phrase's feature then depends on nothing but the phrase, so a resumed
    run reads the very numbers an uninterrupted one did. Scenes repeat phrases, so most steps encode none."""

    LIMIT = 200_000  # phrases kept (128 floats each for the bundled models)

    def __init__(self, encode_text: Callable[[Tensor], Tensor]) -> None:
        self.encode_text = encode_text
        self.cache: dict[bytes, Tensor] = {}

    @torch.no_grad()
    def __call__(self, tokens: Tensor) -> Tensor:
        keys = [row.cpu().numpy().tobytes() for row in tokens]
        if len(self.cache) > self.LIMIT:
            self.cache.clear()
        for key, row in zip(keys, tokens):
            if key not in self.cache:
                self.cache[key] = self.encode_text(row[None])[0].float()
        return torch.stack([self.cache[k] for k in keys]) if keys else tokens.new_zeros(0, 0).float()


@dataclass
class Regions:
    """A step's regions and the student's dense view of its images (``StepFeatures.regions``)."""

    pixels: Tensor  # (B, 3, S, S) the preprocessed images
    boxes: Tensor  # (R, 5) image row, x0, y0, x1, y1 in input pixels
    text: Tensor  # (R, D) the phrases' text features, unnormalised (with gradient, like the captions')
    phrase_ids: Tensor  # (R,) ids of the phrases drawn this step (equal phrases, equal ids, on every rank)
    true_ids: Tensor  # (R, A) ids of every phrase that describes each region: its positives (region_targets)
    student: StudentDense
    parts: ViTParts  # the student's tower, taken apart (to run crops or the last block again)
    encode_image: Callable[[Tensor], Tensor]  # the student's image tower (with gradient)
    teacher: RegionTeacher | None = None
    negatives: Tensor | None = None  # (R, K, D) each phrase's attribute-swapped versions (an objective needing "region_negatives")
    negatives_valid: Tensor | None = None  # (R, K) bool: which of them exist
    caption_swaps: Tensor | None = None  # (B, K, D) each caption's shape-swapped versions (an objective needing "caption_swaps")
    caption_swaps_valid: Tensor | None = None  # (B, K) bool: which of them exist
    unnamed_boxes: Tensor | None = None  # (R', 5) boxes of regions whose phrases name a held-out word (--region-exclude), no phrase

    @property
    def patch(self) -> int:
        return self.parts.patch_size

    @property
    def side(self) -> int:
        return int(self.pixels.shape[-1])
