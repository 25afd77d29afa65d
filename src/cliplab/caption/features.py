"""What the captioner reads of an image: the model's embedding and its last feature map as grid tokens.

LightCap (Wang et al., AAAI 2023, arXiv 2212.08985, section 3) keeps CLIP's grid features, the
trunk's last map before the attention pool, because the pooled embedding alone loses where things
are: on the bundled shapes-tiny a linear probe reads an object's position from the pooled
embedding 73% of the time and from the 2x2 map of 1024 channels 100%.

A :class:`CaptionFeatureModel` is a model whose image rows hold both, so the feature store embeds,
caches and decodes them like any other rows: ``[e; g_1; ...; g_n] / sqrt(1 + n)``, where ``e`` is the
unit embedding and each ``g_i`` a grid cell's channels, LayerNorm-ed and scaled to unit length (the
layout of ``cliplab.models.multilevel.merge_rows``). :func:`split_rows` takes a row apart again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.errors import InputError
from cliplab.models.base import Model
from cliplab.models.multilevel import merge_rows

Tensor = torch.Tensor


class CaptionFeatureModel(Model):
    """``base``'s image rows as (embedding, ``grid`` x ``grid`` tokens of the last feature map), side by
    side; ``identity`` extends the base's, so the feature store keeps these rows apart."""

    def __init__(self, base: Model, grid: int = 2) -> None:
        from cliplab.models.vision_parts import FeatureMaps, input_size

        if isinstance(base, CaptionFeatureModel):
            raise InputError(f"{base.name} already gives caption features; pass the model it was made from")
        if grid < 1:
            raise InputError(f"grid must be at least 1, got {grid}")
        visual = getattr(base.torch_module, "visual", None)
        if visual is None:
            raise InputError(f"{base.name}: the captioner reads an open_clip image tower's feature map; this model has none")
        self.base = base
        self.maps = FeatureMaps(visual)
        self.name = f"{base.name}[caption-grid{grid}]"
        self.device, self.precision, self.torch_module = base.device, base.precision, base.torch_module
        self.preprocess, self.context_length, self.logit_scale = base.preprocess, base.context_length, base.logit_scale
        for attr in ("preprocess_cfg", "image_processor"):  # how pixels are prepared (decoding)
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))
        side = input_size(base)
        with torch.inference_mode():
            self.maps.clear()
            base.image_features(torch.zeros(1, 3, side, side, device=base.device, dtype=base.input_dtype))
            fmap = self.maps.take()
        self.grid = min(grid, fmap.shape[2], fmap.shape[3])
        self.width = int(fmap.shape[1])
        self.tokens = self.grid * self.grid
        self.embed_dim = base.embed_dim + self.tokens * self.width

    @property
    def identity(self) -> str:
        return f"{self.base.identity}|caption-grid{self.grid}"

    def tokenize(self, texts: Sequence[str]) -> Any:
        return self.base.tokenize(texts)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.base.token_counts(texts)

    def text_features(self, tokens: Any) -> Tensor:
        return self.base.text_features(tokens)

    def image_features(self, pixels: Tensor) -> Tensor:
        self.maps.clear()
        emb = self.base.image_features(pixels).float()
        fmap = self.maps.take().float()
        cells = F.adaptive_avg_pool2d(fmap, self.grid).flatten(2).transpose(1, 2)  # (B, n, C), row by row
        cells = F.layer_norm(cells, (cells.shape[-1],))
        return merge_rows([emb[:, None, :], cells])


def split_rows(X: np.ndarray | Tensor, embed_dim: int, width: int) -> tuple[Tensor, Tensor]:
    """Caption-feature rows -> (unit embeddings (N, embed_dim), unit grid tokens (N, n, width))."""
    X = torch.as_tensor(np.asarray(X, dtype=np.float32)) if not isinstance(X, Tensor) else X.float()
    if X.ndim != 2 or (X.shape[1] - embed_dim) % width or X.shape[1] <= embed_dim:
        raise InputError(f"caption features have {X.shape[-1]} columns; expected {embed_dim} + n x {width} "
                         "(rows of CaptionFeatureModel for the captioner's model)")  # fmt: skip
    emb = F.normalize(X[:, :embed_dim], dim=-1)
    grid = F.normalize(X[:, embed_dim:].reshape(len(X), -1, width), dim=-1)
    return emb, grid
