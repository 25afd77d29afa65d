"""The narrow vision-side interface that dense methods need: the pieces of an image tower's last
attention layer, for open_clip ViTs, transformers CLIP ViTs and open_clip's ModifiedResNet.

``vision_parts(model)`` returns one of two shapes:

- :class:`ViTParts` - ``embed`` (patch tokens with the class token, positional embedding resized to
  any grid, pre-norm), ``run_blocks`` (every block but the last), ``block_outputs`` (the tokens after
  chosen blocks, for multi-level features), and the last block's pieces:
  ``ln_1``, ``qkv`` (per-head q/k/v), ``out_proj``, ``ls_1``, ``ln_2``, ``mlp``, ``ls_2``; then
  ``head`` (final norm and projection into the joint space).
- :class:`PoolParts` - a ResNet's ``features`` (the last feature map) and its attention pool's
  ``qkv`` / ``out_proj``, the pool's positional embedding resized to any grid.

Everything that reads a library's module layout lives here, nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cliplab.errors import InputError

Tensor = torch.Tensor


def resize_grid_embedding(pos: Tensor, grid: tuple[int, int], prefix: int = 1) -> Tensor:
    """Positional embedding ``(prefix + g*g, D)`` resized bicubically to ``(prefix + h*w, D)``
    (as MaskCLIP/SCLIP/ClearCLIP do for inputs of another size); unchanged when the grid matches."""
    extra, patches = pos[:prefix], pos[prefix:]
    side = round(math.sqrt(patches.shape[0]))
    if (side, side) == tuple(grid):
        return pos
    square = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    resized = F.interpolate(square, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([extra, resized.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)])


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, L, D) -> (B, heads, L, D/heads)."""
    b, n, d = x.shape
    return x.reshape(b, n, heads, d // heads).transpose(1, 2)


@dataclass
class ViTParts:
    """A ViT image tower taken apart at its last block (tokens are (B, L, D), class token first)."""

    patch_size: int
    num_heads: int
    embed: Callable[[Tensor], tuple[Tensor, tuple[int, int]]]  # pixels -> tokens, patch grid
    blocks: list[Callable[[Tensor], Tensor]]  # every block, batch-first tokens in and out
    ln_1: Callable[[Tensor], Tensor]
    qkv: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]  # normed tokens -> q, k, v as (B, h, L, d)
    out_proj: Callable[[Tensor], Tensor]  # merged heads (B, L, D) -> (B, L, D)
    ls_1: Callable[[Tensor], Tensor]
    ln_2: Callable[[Tensor], Tensor]
    mlp: Callable[[Tensor], Tensor]
    ls_2: Callable[[Tensor], Tensor]
    head: Callable[[Tensor], Tensor]  # final norm + projection: (B, L, D) -> (B, L, E)
    block_qkv: Callable[[int, Tensor], tuple[Tensor, Tensor, Tensor]]  # (block index, tokens before its norm) -> q, k, v
    finish_block: Callable[[int, Tensor, Tensor], Tensor]  # (block index, tokens before it, merged heads of its attention) -> tokens after it

    def run_blocks(self, x: Tensor, stop: int = -1) -> Tensor:
        """Tokens after the blocks before index ``stop`` (default: every block but the last)."""
        for block in self.blocks[:stop]:
            x = block(x)
        return x

    def block_inputs(self, pixels: Tensor) -> tuple[list[Tensor], tuple[int, int]]:
        """The tokens (B, L, D) entering each block (the last block does not run) and the patch grid."""
        x, grid = self.embed(pixels)
        inputs = [x]
        for block in self.blocks[:-1]:
            inputs.append(block(inputs[-1]))
        return inputs, grid

    def block_outputs(self, pixels: Tensor, indices: list[int]) -> tuple[list[Tensor], tuple[int, int]]:
        """The tokens (B, L, D) after each block in ``indices`` (0-based, any order; only the blocks up
        to the deepest one asked for run) and the patch grid: the hidden states multi-level features read."""
        x, grid = self.embed(pixels)
        wanted = set(indices)
        found: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks[: max(indices) + 1]):
            x = block(x)
            if i in wanted:
                found[i] = x
        return [found[i] for i in indices], grid

    def last_block(self, x: Tensor) -> Tensor:
        """The unmodified last block (to check the pieces against the library's own forward)."""
        q, k, v = self.qkv(self.ln_1(x))
        attn = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1) @ v
        return self.finish_block(-1, x, attn.transpose(1, 2).flatten(2))


@dataclass
class PoolParts:
    """A convolutional tower with CLIP's attention pool (OpenAI ModifiedResNet)."""

    stride: int  # input pixels per feature-map cell
    num_heads: int
    features: Callable[[Tensor], Tensor]  # pixels -> (B, C, h, w)
    positional: Callable[[tuple[int, int]], Tensor]  # grid -> (1 + h*w, C), mean token first
    qkv: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]  # (B, L, C) -> q, k, v as (B, h, L, d)
    out_proj: Callable[[Tensor], Tensor]  # (B, L, C) -> (B, L, E)


# --- open_clip ---------------------------------------------------------------------------------
def _openclip_vit(visual) -> ViTParts:
    blocks = visual.transformer.resblocks
    last = blocks[-1]
    attn = last.attn
    # nn.MultiheadAttention keeps its input projection as a bare weight; cliplab's ProjectedAttention
    # (the same attention, rebuilt for bf16/int8 on CPUs) as a Linear layer
    in_proj = getattr(attn, "in_proj", None)
    if in_proj is None and getattr(attn, "in_proj_weight", None) is None:
        raise InputError("dense features need the standard open_clip attention block (no qk-norm or custom blocks)")
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "final_ln_after_pool", False):
        raise InputError("dense features need a ViT that pools its class token (attentional pooling is not supported)")
    patch = visual.conv1.kernel_size[0]
    batch_first = getattr(visual.transformer, "batch_first", True)

    def embed(pixels: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = visual.conv1(pixels.to(visual.conv1.weight.dtype))
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + resize_grid_embedding(visual.positional_embedding, grid).to(x.dtype)
        return visual.ln_pre(x), grid

    def batch_first_block(block) -> Callable[[Tensor], Tensor]:
        return block if batch_first else (lambda x: block(x.transpose(0, 1)).transpose(0, 1))

    def projections(attention) -> Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]:
        def qkv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            proj = getattr(attention, "in_proj", None)
            projected = proj(x) if proj is not None else F.linear(x, attention.in_proj_weight, attention.in_proj_bias)
            return tuple(split_heads(t, attention.num_heads) for t in projected.chunk(3, dim=-1))

        return qkv

    def block_qkv(index: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return projections(blocks[index].attn)(blocks[index].ln_1(x))

    def finish_block(index: int, x: Tensor, attended: Tensor) -> Tensor:
        block = blocks[index]
        x = x + block.ls_1(block.attn.out_proj(attended))
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    def head(x: Tensor) -> Tensor:
        x = visual.ln_post(x)
        return x @ visual.proj if visual.proj is not None else x

    return ViTParts(patch, attn.num_heads, embed, [batch_first_block(b) for b in blocks], last.ln_1, projections(attn), attn.out_proj, last.ls_1,
                    last.ln_2, last.mlp, last.ls_2, head, block_qkv, finish_block)  # fmt: skip


def _openclip_resnet(visual) -> PoolParts:
    pool = visual.attnpool

    def features(pixels: Tensor) -> Tensor:
        x = visual.stem(pixels.to(visual.conv1.weight.dtype))
        return visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))

    def qkv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(split_heads(proj(x), pool.num_heads) for proj in (pool.q_proj, pool.k_proj, pool.v_proj))

    stride = visual.image_size // round(math.sqrt(pool.positional_embedding.shape[0] - 1))
    return PoolParts(stride, pool.num_heads, features, lambda grid: resize_grid_embedding(pool.positional_embedding, grid),
                     qkv, pool.c_proj)  # fmt: skip


# --- transformers ------------------------------------------------------------------------------
def _hf_vit(module) -> ViTParts:
    vm = module.vision_model
    emb = vm.embeddings
    layers = vm.encoder.layers
    last = layers[-1]
    attn = last.self_attn
    heads = attn.num_heads
    identity = torch.nn.Identity()

    def embed(pixels: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = emb.patch_embedding(pixels.to(emb.patch_embedding.weight.dtype))
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = emb.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + resize_grid_embedding(emb.position_embedding.weight, grid).to(x.dtype)
        return vm.pre_layrnorm(x), grid

    def as_block(layer) -> Callable[[Tensor], Tensor]:
        def block(x: Tensor) -> Tensor:
            out = layer(x, None)
            return out[0] if isinstance(out, tuple) else out

        return block

    def projections(attention) -> Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]:
        return lambda x: tuple(split_heads(proj(x), heads) for proj in (attention.q_proj, attention.k_proj, attention.v_proj))

    def block_qkv(index: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return projections(layers[index].self_attn)(layers[index].layer_norm1(x))

    def finish_block(index: int, x: Tensor, attended: Tensor) -> Tensor:
        layer = layers[index]
        x = x + layer.self_attn.out_proj(attended)
        return x + layer.mlp(layer.layer_norm2(x))

    def head(x: Tensor) -> Tensor:
        return module.visual_projection(vm.post_layernorm(x))

    return ViTParts(emb.patch_size, heads, embed, [as_block(layer) for layer in layers], last.layer_norm1, projections(attn), attn.out_proj,
                    identity, last.layer_norm2, last.mlp, identity, head, block_qkv, finish_block)  # fmt: skip


def vision_parts(model) -> ViTParts | PoolParts:
    """The last-layer pieces of ``model``'s image tower (a cliplab :class:`~cliplab.models.Model`)."""
    module = model.torch_module
    visual = getattr(module, "visual", None)
    if visual is not None and hasattr(visual, "transformer") and hasattr(visual, "conv1"):
        return _openclip_vit(visual)
    if visual is not None and hasattr(visual, "attnpool"):
        return _openclip_resnet(visual)
    vm = getattr(module, "vision_model", None)
    if vm is not None and hasattr(vm, "encoder") and hasattr(module, "visual_projection"):
        return _hf_vit(module)
    raise InputError(f"{model.name}: dense features need an open_clip ViT or ModifiedResNet, or a transformers CLIP ViT")


def pixel_normalisation(model) -> tuple[list[float], list[float]]:
    """The (mean, std) the model's preprocessing normalises pixels with."""
    cfg = getattr(model, "preprocess_cfg", None)
    if cfg is not None:
        return list(cfg["mean"]), list(cfg["std"])
    processor = getattr(model, "image_processor", None)
    if processor is not None:
        return list(processor.image_mean), list(processor.image_std)
    raise InputError(f"{model.name}: cannot tell how this model normalises pixels")


def input_size(model) -> int:
    """The model's native input side in pixels."""
    cfg = getattr(model, "preprocess_cfg", None)
    if cfg is not None:
        size = cfg["size"]
        return int(size[0] if isinstance(size, (tuple, list)) else size)
    return int(model.torch_module.config.vision_config.image_size)


# --- the last feature map, caught during an ordinary forward pass --------------------------------
def feature_map_source(visual: torch.nn.Module) -> tuple[torch.nn.Module, Callable[[Tensor], Tensor]]:
    """(module, to_map) for an open_clip image tower: the module whose output is the tower's last
    feature map (ModifiedResNet: ``layer4``; ViT: ``transformer``) and the function turning that
    output into a (B, C, h, w) map (a ViT's patch tokens on their grid, the class token dropped)."""
    if hasattr(visual, "layer4") and hasattr(visual, "attnpool"):
        return visual.layer4, lambda x: x
    transformer = getattr(visual, "transformer", None)
    if transformer is not None and hasattr(visual, "conv1"):
        batch_first = getattr(transformer, "batch_first", True)

        def to_map(x: Tensor) -> Tensor:
            tokens = (x if batch_first else x.transpose(0, 1))[:, 1:]
            side = round(math.sqrt(tokens.shape[1]))
            return tokens[:, : side * side].transpose(1, 2).reshape(tokens.shape[0], -1, side, side)

        return transformer, to_map
    raise InputError(f"feature-map distillation needs an open_clip ResNet or ViT image tower, not {type(visual).__name__}")


class FeatureMaps:
    """A forward hook on an image tower that keeps the (B, C, h, w) maps of every pass since ``clear``."""

    def __init__(self, visual: torch.nn.Module) -> None:
        module, self.to_map = feature_map_source(visual)
        self.maps: list[Tensor] = []
        self.handle = module.register_forward_hook(lambda _m, _i, out: self.maps.append(self.to_map(out)))

    def clear(self) -> None:
        self.maps = []

    def take(self) -> Tensor:
        """The maps caught since the last ``clear`` (batches concatenated), then clear."""
        if not self.maps:
            raise RuntimeError("no feature map was caught; the hooked tower did not run")
        out = torch.cat(self.maps) if len(self.maps) > 1 else self.maps[0]
        self.clear()
        return out

    def remove(self) -> None:
        self.handle.remove()
