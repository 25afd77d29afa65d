"""Box class tokens: a box's region embedding read by the image tower's own class-token path.

For each box a copy of the class token runs through every block beside its image's tokens. In each
block it attends to itself and to the patch cells under the box, a cell's attention logit raised by
log(the share of the cell the box covers): fully covered cells count as they are, partly covered ones
less, uncovered ones not at all. The image's own tokens never attend to it, so they, and the image
embedding, are unchanged. The tower's final norm and projection take it into the joint space.

This is MaskCLIP's mask class tokens (Ding, Wang & Tu, "Open-Vocabulary Universal Image Segmentation
with MaskCLIP", ICML 2023, §3.2: a class-token copy per mask whose attention is restricted to the
mask) with a box for the mask. It has no parameters: any ViT reads a box this way, and the tower learns
to through CLOC's region loss (``cliplab train --objectives clip,cloc --prompter masked-class``), since
the loss reaches every block through the copies. A model folder names it with ``"prompter":
"masked-class"``.
"""

from __future__ import annotations

import torch

from cliplab.dense.box_pool import box_cell_cover
from cliplab.models.vision_parts import ViTParts

Tensor = torch.Tensor
MASKED_CLASS = "masked-class"  # the name a model folder's manifest (or a bundled config) gives this prompter


def box_class_tokens(parts: ViTParts, pixels: Tensor, boxes: Tensor) -> Tensor:
    """(R, E) unnormalised region embeddings of ``boxes`` (R, 5: image row, x0, y0, x1, y1 in input pixels)
    in ``pixels`` (B, 3, S, S)."""
    return box_class_tokens_from(parts, *parts.block_inputs(pixels), boxes)


def box_class_tokens_from(parts: ViTParts, block_inputs: list[Tensor], grid: tuple[int, int], boxes: Tensor) -> Tensor:
    """:func:`box_class_tokens` from the tokens entering each block (``ViTParts.block_inputs``; a training
    step's student pass has them already) and the patch grid."""
    rows = boxes[:, 0].long()
    cover = box_cell_cover(boxes[:, 1:].to(block_inputs[0].device), grid, parts.patch_size)  # (R, N)
    bias = torch.cat([cover.new_zeros(len(cover), 1), cover.log()], dim=1).to(block_inputs[0].dtype)  # over [itself ; patches]; log 0 = -inf
    region = block_inputs[0][rows, :1]  # (R, 1, W): each box's copy of the class token
    for index, x in enumerate(block_inputs):
        _, k, v = parts.block_qkv(index, x)  # (B, h, L, d)
        q_r, k_r, v_r = parts.block_qkv(index, region)  # (R, h, 1, d)
        keys = torch.cat([k_r, k[rows, :, 1:]], dim=2)
        values = torch.cat([v_r, v[rows, :, 1:]], dim=2)
        logits = q_r @ keys.transpose(-2, -1) * q_r.shape[-1] ** -0.5 + bias[:, None, None, :]
        attended = (torch.softmax(logits, dim=-1) @ values).transpose(1, 2).flatten(2)  # (R, 1, W)
        region = parts.finish_block(index, region, attended)
    return parts.head(region)[:, 0]


class MaskedClassPrompter(torch.nn.Module):
    """The prompter interface (:class:`cliplab.dense.prompter.Prompter`'s ``embed``) for box class tokens."""

    kind = MASKED_CLASS

    def embed(self, model, parts: ViTParts, pixels: Tensor, boxes: Tensor) -> Tensor:
        """(R, E) region embeddings of ``boxes`` (R, 5) in ``pixels``: what ``Model.encode_regions`` calls."""
        return box_class_tokens(parts, pixels, boxes)
