"""Multi-level image features (COMM, Jiang et al. 2023, arXiv 2310.08825): tokens from several blocks
of a ViT image tower, each LayerNorm-ed, side by side.

COMM's merge is "LLN-Layerscale": ``z = sum_i w_i * Linear_i(LN(z_i))`` over the chosen layers ``i``.
Here the features are the LN-ed tokens themselves, concatenated; the learned linear merge is the
head's own weights: a linear head (``LinearProbe``, a linear adapter or the trainer's projection)
fitted on the concatenation computes ``W [LN(z_1); ...; LN(z_k)] = sum_i W_i LN(z_i)``, the same
family of maps, fitted together with the classifier.

Which tokens of each layer (``tokens``, parts joined by ``+``):

- ``cls``: the class token;
- ``mean``: the mean of the patch tokens;
- ``gridK``: the patch tokens averaged over a K x K grid of cells (K*K vectors, row by row), which keeps
  where things are; ``grid`` is ``grid2``. COMM itself passes every token on; ``gridK`` with K the patch
  grid's side does that.

Each vector is LayerNorm-ed without an affine map (the learned part is the head), then scaled to unit
length and the row divided by the square root of the number of vectors, so every vector weighs the
same and the row has unit length, like every embedding matrix in cliplab.
"""

from __future__ import annotations

import math
import re
from numbers import Integral
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cliplab.errors import InputError, how_to_pass
from cliplab.models.base import Model

Tensor = torch.Tensor
TOKEN_PARTS = ("cls", "mean", "gridK")
_GRID = re.compile(r"grid(\d*)")


def parse_layers(layers: Sequence[int] | str, depth: int) -> tuple[int, ...]:
    """Block indices (negative counts from the end, ``-1`` the last block) as 0-based indices, in
    the order given; ``layers`` may be a list or text such as ``"-1,-2,-3"``."""
    if isinstance(layers, str):
        try:
            layers = [int(part) for part in layers.replace(" ", "").split(",") if part]
        except ValueError as exc:
            raise InputError(f"{how_to_pass('layers', layers)}: pass block indices such as -1,-2,-3 (negative counts from the last block)") from exc
    layers = list(layers)
    if not layers:
        raise InputError(f"{how_to_pass('layers')} names no block: name at least one, e.g. -1 for the last")
    resolved = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, Integral) or not -depth <= layer < depth:
            raise InputError(f"{how_to_pass('layers')}: {layer!r} is not a block of this {depth}-block image tower; use -{depth}..{depth - 1}")
        resolved.append(int(layer) % depth)
    if len(set(resolved)) != len(resolved):
        raise InputError(f"{how_to_pass('layers')} names a block twice (a {depth}-block tower: -1 is {depth - 1})")
    return tuple(resolved)


def parse_tokens(tokens: str) -> tuple[tuple[str, int], ...]:
    """``"cls+grid2"`` -> ``(("cls", 0), ("grid", 2))``: which vectors each layer gives."""
    parts = []
    for part in str(tokens).replace(" ", "").split("+"):
        grid = _GRID.fullmatch(part)
        if part in ("cls", "mean"):
            parts.append((part, 0))
        elif grid and (grid.group(1) == "" or int(grid.group(1)) >= 1):
            parts.append(("grid", int(grid.group(1) or 2)))
        else:
            raise InputError(f"{how_to_pass('tokens', tokens)}: use parts of {', '.join(TOKEN_PARTS)} joined by '+', e.g. cls or cls+grid2")
    if len(set(parts)) != len(parts):
        raise InputError(f"{how_to_pass('tokens', tokens)} names a part twice")
    return tuple(parts)


def describe_tokens(parts: tuple[tuple[str, int], ...]) -> str:
    return "+".join(f"grid{k}" if name == "grid" else name for name, k in parts)


def vectors_per_layer(parts: tuple[tuple[str, int], ...]) -> int:
    return sum(k * k if name == "grid" else 1 for name, k in parts)


def layer_vectors(hidden: Tensor, grid: tuple[int, int], parts: tuple[tuple[str, int], ...]) -> Tensor:
    """One layer's chosen vectors (B, n, D) from its tokens (B, 1 + h*w, D), class token first,
    each LayerNorm-ed (COMM: LN per layer before the merge) over the channels, no affine map."""
    normed = F.layer_norm(hidden.float(), (hidden.shape[-1],))
    patches = normed[:, 1:]
    out = []
    for name, k in parts:
        if name == "cls":
            out.append(normed[:, :1])
        elif name == "mean":
            out.append(patches.mean(1, keepdim=True))
        else:
            cells = patches.reshape(len(patches), grid[0], grid[1], -1).permute(0, 3, 1, 2)
            out.append(F.adaptive_avg_pool2d(cells, k).flatten(2).transpose(1, 2))
    return torch.cat(out, dim=1)


def merge_rows(vectors: Sequence[Tensor]) -> Tensor:
    """Vectors (B, n_i, D_i) -> rows (B, sum n_i D_i): each vector unit length, the row divided by
    sqrt(number of vectors), so every vector weighs the same and the row has unit length."""
    count = sum(v.shape[1] for v in vectors)
    flat = [F.normalize(v, dim=-1).flatten(1) for v in vectors]
    return torch.cat(flat, dim=1) / math.sqrt(count)


class MultiLevelModel(Model):
    """``base``'s image tower read at several blocks: image rows are the chosen layers' LN-ed tokens
    side by side (see the module docstring); texts have no place in that space.

    Use ``model.multilevel(layers, tokens)`` or ``model.encode_images(images, layers=[-1, -2, -3])``.
    ``identity`` extends the base model's with the layers and tokens, so the feature store keeps these
    rows apart from the model's plain embeddings (and from other layer sets).
    """

    def __init__(self, base: Model, layers: Sequence[int] | str = (-1, -2, -3), tokens: str = "cls"):
        from cliplab.models.vision_parts import ViTParts, vision_parts

        if isinstance(base, MultiLevelModel):
            raise InputError(f"{base.name} already gives multi-level features; pass the model it was made from")
        parts = vision_parts(base)
        if not isinstance(parts, ViTParts):
            raise InputError(f"{base.name}: multi-level features (layers=) need a ViT image tower; this one is a ResNet")
        self.base = base
        self.parts = parts
        self.depth = len(parts.blocks)
        self.layers = parse_layers(layers, self.depth)
        self.token_parts = parse_tokens(tokens)
        self.tokens = describe_tokens(self.token_parts)
        width = _width(base, parts)
        self.name = f"{base.name}[layers={','.join(str(i - self.depth) for i in self.layers)};tokens={self.tokens}]"
        self.device = base.device
        self.precision = base.precision
        self.torch_module = base.torch_module
        self.preprocess = base.preprocess
        self.context_length = base.context_length
        self.embed_dim = width * len(self.layers) * vectors_per_layer(self.token_parts)
        self.logit_scale = base.logit_scale
        for attr in ("preprocess_cfg", "image_processor"):  # how pixels are prepared (decoding, dense tools)
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    @property
    def identity(self) -> str:
        layers = ",".join(str(i) for i in self.layers)
        return f"{self.base.identity}|layers={layers}/{self.depth}|tokens={self.tokens}"

    def tokenize(self, texts: Sequence[str]) -> Any:
        return self.base.tokenize(texts)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.base.token_counts(texts)

    def text_features(self, tokens: Any) -> Tensor:
        raise InputError(f"{self.name}: multi-level image features have no text counterpart; zero-shot and text "
                         "search need the model itself (fit a head such as LinearProbe on these features instead)")  # fmt: skip

    def image_features(self, pixels: Tensor) -> Tensor:
        hidden, grid = self.parts.block_outputs(pixels, list(self.layers))
        return merge_rows([layer_vectors(h, grid, self.token_parts) for h in hidden])

    def encode_images(self, images, batch_size: int = 64, layers=None, tokens: str = "cls"):
        if layers is not None:
            raise InputError(f"{self.name} already gives multi-level features; pass layers= to the model it was made from")
        return super().encode_images(images, batch_size)

    def multilevel(self, layers=(-1, -2, -3), tokens: str = "cls", merge_with=None) -> Model:
        raise InputError(f"{self.name} already gives multi-level features; call multilevel on the model it was made from")


class MergedEncoders(Model):
    """Several encoders' image rows side by side (COMM merges CLIP's multi-level features with a
    second encoder's, channel-wise): each model's unit rows, divided by sqrt(number of models).

    Each model prepares the image its own way: ``preprocess`` returns every model's pixels flattened
    into one vector, and ``image_features`` splits them again.
    """

    def __init__(self, models: Sequence[Model]):
        from PIL import Image

        models = list(models)
        if len(models) < 2:
            raise InputError("merging encoders needs at least two models")
        first = models[0]
        self.models = models
        probe = Image.new("RGB", (8, 8))
        self.shapes = [tuple(m.preprocess(probe).shape) for m in models]
        self.name = " + ".join(m.name for m in models)
        self.device = first.device
        self.precision = first.precision
        self.torch_module = first.torch_module
        self.context_length = first.context_length
        self.embed_dim = sum(m.embed_dim for m in models)
        self.logit_scale = first.logit_scale

    def preprocess(self, image) -> Tensor:
        return torch.cat([m.preprocess(image).flatten() for m in self.models])

    def preprocess_batch(self, images) -> Tensor:
        from cliplab.models.base import to_pil

        return torch.stack([self.preprocess(to_pil(im)) for im in images])

    def to_device(self, pixels: Tensor) -> Tensor:
        return pixels.to(self.device, torch.float32)  # each model casts its own share

    @property
    def identity(self) -> str:
        return "merge(" + " + ".join(m.identity for m in self.models) + ")"

    def tokenize(self, texts: Sequence[str]) -> Any:
        return self.models[0].tokenize(texts)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.models[0].token_counts(texts)

    def text_features(self, tokens: Any) -> Tensor:
        raise InputError(f"{self.name}: merged image features have no text counterpart; fit a head such as LinearProbe on them")

    def image_features(self, pixels: Tensor) -> Tensor:
        rows, start = [], 0
        for model, shape in zip(self.models, self.shapes):
            size = math.prod(shape)
            own = pixels[:, start : start + size].reshape(len(pixels), *shape)
            start += size
            rows.append(F.normalize(model.image_features(model.to_device(own)).float(), dim=-1).to(self.device))
        return torch.cat(rows, dim=1) / math.sqrt(len(rows))


def _width(base: Model, parts) -> int:
    """The token width of the image tower (one dummy embedding step, no blocks run)."""
    from cliplab.models.vision_parts import input_size

    side = input_size(base)
    with torch.inference_mode():
        tokens, _ = parts.embed(torch.zeros(1, 3, side, side, device=base.device, dtype=base.input_dtype))
    return int(tokens.shape[-1])
