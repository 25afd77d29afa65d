"""Dense image features: one embedding per patch (or ResNet cell), in the joint image-text space.

ViTs run every block but the last unchanged, then the last block as the chosen method rewrites it
(:mod:`cliplab.dense.attention`), then the final norm and projection; the class token is dropped.
A ModifiedResNet runs its attention pool with every feature-map cell as a query, the MaskCLIP
trick (Zhou et al. 2022, sec. 3.2): with ``maskclip`` that is the value and output projections
applied as 1x1 convolutions to the feature map, without the pool's positional embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.dense.attention import LastBlock, last_block, value_attention
from cliplab.models.vision_parts import PoolParts, ViTParts, vision_parts

Tensor = torch.Tensor


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, L, d) -> (B, L, h*d)."""
    return x.transpose(1, 2).flatten(2)


def last_block_input(parts: ViTParts, pixels: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """The tokens (B, L, D) entering a ViT's last block, and the patch grid."""
    x, grid = parts.embed(pixels)
    return parts.run_blocks(x), grid


def vit_tokens(parts: ViTParts, pixels: Tensor, block: LastBlock,
               last_input: tuple[Tensor, tuple[int, int]] | None = None) -> tuple[Tensor, tuple[int, int]]:  # fmt: skip
    """Patch tokens (B, h*w, E) after the rewritten last block and the projection (``last_input``: the
    :func:`last_block_input` of ``pixels`` when already computed)."""
    x, grid = last_input if last_input is not None else last_block_input(parts, pixels)
    q, k, v = parts.qkv(parts.ln_1(x))
    out = parts.out_proj(merge_heads(block.attention(q, k, v, grid)))
    x = x + parts.ls_1(out) if block.residual else out
    if block.ffn:
        x = x + parts.ls_2(parts.mlp(parts.ln_2(x)))
    return parts.head(x)[:, 1:], grid


def pool_tokens(parts: PoolParts, pixels: Tensor, block: LastBlock) -> tuple[Tensor, tuple[int, int]]:
    """Cell tokens (B, h*w, E) of a ResNet's attention pool with every cell as a query."""
    fmap = parts.features(pixels)
    grid = (fmap.shape[2], fmap.shape[3])
    cells = fmap.flatten(2).transpose(1, 2)
    x = torch.cat([cells.mean(dim=1, keepdim=True), cells], dim=1)
    # MaskCLIP's ResNet head projects the bare feature map (maskclip_head.py: c_proj(v_proj(x)), no
    # positional embedding); the methods that compare queries and keys keep the pool's own embedding.
    if block.attention is not value_attention:
        x = x + parts.positional(grid).to(cells.dtype)
    q, k, v = parts.qkv(x)
    return parts.out_proj(merge_heads(block.attention(q, k, v, grid)))[:, 1:], grid


def dense_features(model, pixels: Tensor, method: str = "clearclip", naclip_std: float = 5.0, parts=None,
                   last_input: tuple[Tensor, tuple[int, int]] | None = None) -> Tensor:  # fmt: skip
    """L2-normalised dense features (B, E, h, w) of a preprocessed NCHW batch (any size).

    ``method``: vanilla | maskclip | sclip | clearclip | naclip. ``parts``: a ready
    :func:`~cliplab.models.vision_parts.vision_parts` result (looked up when None). ``last_input``:
    a ViT's :func:`last_block_input` of these pixels, when the caller needs it too (computed once).
    """
    parts = parts if parts is not None else vision_parts(model)
    block = last_block(method, naclip_std)
    pixels = pixels.to(model.device, model.input_dtype)  # the module's own precision (weights are cast, not autocast)
    if isinstance(parts, ViTParts):
        tokens, grid = vit_tokens(parts, pixels, block, last_input)
    else:
        tokens, grid = pool_tokens(parts, pixels, block)
    tokens = F.normalize(tokens.float(), dim=-1)
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def patch_size(parts) -> int:
    """Input pixels per feature cell."""
    return parts.patch_size if isinstance(parts, ViTParts) else parts.stride
