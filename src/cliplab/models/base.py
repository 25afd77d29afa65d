"""The one model interface every backend implements.

A backend subclass supplies four things: how to tokenize, how many tokens a text needs before
truncation, and how to turn a pixel batch / a token batch into (unnormalised) embeddings. The base
class does the rest the same way for everyone: input conversion, batching, the truncation warning,
normalisation and the float32 numpy output.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from cliplab.errors import InputError, warn

ImageInput = Image.Image | str | Path | np.ndarray


def to_pil(image: ImageInput) -> Image.Image:
    """Convert a PIL image, a file path or a uint8 array (HxW or HxWxC) to an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (str, Path)):
        from cliplab.data.images import open_image

        return open_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image array has dtype {image.dtype}; pass uint8 pixels (0-255)")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise InputError(f"image array has shape {image.shape}; pass HxW, HxWx3 or HxWx4")
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"cannot read an image from {type(image).__name__}; pass a PIL image, a path or a uint8 array")


@dataclass(frozen=True)
class LinearWeight:
    """One linear map inside a model: rows ``rows`` of ``getattr(module, param)`` (out x in)."""

    name: str
    module: torch.nn.Module
    param: str
    rows: slice


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


class Model(abc.ABC):
    """A CLIP-style dual encoder with the same surface for every backend.

    Attributes: ``name`` (the spec it was loaded from), ``device``, ``precision`` (the effective
    one: fp32, bf16, fp16 or int8; the module is cast or quantised to it), ``torch_module``
    (the underlying ``nn.Module`` in eval mode), ``preprocess`` (PIL image -> CHW float tensor),
    ``context_length``, ``embed_dim``, ``logit_scale`` (already exponentiated), ``identity`` (a
    string that changes whenever the weights or preprocessing change; used as a cache key).
    """

    name: str
    device: torch.device
    precision: str
    torch_module: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    context_length: int
    embed_dim: int
    logit_scale: float
    identity: str

    # --- what a backend implements -------------------------------------------------------------
    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> Any:
        """Token batch for ``texts``, truncated to ``context_length``; passed to ``text_features``."""

    @abc.abstractmethod
    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens each text needs (special tokens included) before any truncation."""

    @abc.abstractmethod
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings for a preprocessed NCHW batch already on ``device``."""

    @abc.abstractmethod
    def text_features(self, tokens: Any) -> torch.Tensor:
        """Unnormalised text embeddings for the output of ``tokenize``."""

    # --- shared behaviour ----------------------------------------------------------------------
    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype pixels are given to the module in: its weights' dtype (bf16/fp16 when cast)."""
        from cliplab.models.precision import input_dtype

        return input_dtype(self.precision)

    def preprocess_batch(self, images: Iterable[ImageInput]) -> torch.Tensor:
        return torch.stack([self.preprocess(to_pil(im)) for im in images])

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed an already preprocessed NCHW batch: float32, L2-normalised rows."""
        return self.encode_pixels_async(pixels).cpu().numpy()

    @torch.inference_mode()
    def encode_pixels_async(self, pixels: torch.Tensor) -> torch.Tensor:
        """Like ``encode_pixels``, but the float32 rows stay on ``device`` and, on CUDA, are not waited
        for: a caller can prepare the next batch while this one runs, then read this one."""
        feats = self.image_features(self.to_device(pixels))
        return l2_normalise(feats)

    def to_device(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels on ``device`` in ``input_dtype``. A CPU batch bound for CUDA is copied from pinned
        memory on a side stream (``non_blocking``), so the copy overlaps the forward pass already queued."""
        if self.device.type != "cuda" or pixels.is_cuda:
            return pixels.to(self.device, self.input_dtype)
        stream = getattr(self, "_copy_stream", None)
        if stream is None:
            stream = self._copy_stream = torch.cuda.Stream(self.device)
        host = pixels if pixels.is_pinned() else pixels.pin_memory()
        with torch.cuda.stream(stream):
            gpu = host.to(self.device, non_blocking=True)
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(stream)
        gpu.record_stream(current)
        return gpu.to(self.input_dtype)

    def encode_images(
        self, images: Sequence[ImageInput], batch_size: int = 64, layers: Sequence[int] | str | None = None, tokens: str = "cls"
    ) -> np.ndarray:
        """Embed images (PIL images, file paths or uint8 arrays): float32, L2-normalised rows.

        layers: block indices of a ViT image tower (``[-1, -2, -3]``: the last three) to read
            multi-level features from instead of the embedding: the chosen layers' LayerNorm-ed
            tokens side by side, for heads (see :meth:`multilevel`); ``tokens`` says which.
        """
        if layers is not None:
            return self.multilevel(layers, tokens).encode_images(images, batch_size)
        images = list(images)
        out = [
            self.encode_pixels(self.preprocess_batch(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def encode_regions(self, images: Sequence[ImageInput], boxes: Sequence[Sequence[Sequence[float]]], batch_size: int = 64) -> np.ndarray:
        """Embed boxes of images: ``boxes[i]`` is a list of ``[x0, y0, x1, y1]`` pixel boxes of ``images[i]``;
        one float32 L2-normalised row per box, in order (:mod:`cliplab.dense.region_embed`: the model's
        region prompter when it has one, CLOC's or the masked class token, else its dense features pooled
        over the box)."""
        from cliplab.dense.region_embed import encode_regions

        return encode_regions(self, images, boxes, batch_size)

    def multilevel(self, layers: Sequence[int] | str = (-1, -2, -3), tokens: str = "cls", merge_with: Model | None = None) -> Model:
        """A model whose image rows are multi-level features (COMM): the tokens of the blocks ``layers``
        (negative: from the last, ``-1``), each LayerNorm-ed, side by side; ``tokens`` is ``cls``,
        ``mean`` and/or ``gridK`` joined by ``+`` (``cliplab.models.multilevel``). A linear head fitted
        on them is COMM's learned linear merge. ``merge_with``: a second encoder (any cliplab model,
        itself multi-level or not) whose rows are put beside these. Give it to ``cliplab.embed`` or the
        heads like any model; its identity names the layers, so the feature store keeps them apart."""
        from cliplab.models.multilevel import MergedEncoders, MultiLevelModel

        model = MultiLevelModel(self, layers, tokens)
        return model if merge_with is None else MergedEncoders([model, merge_with])

    def warn_if_truncated(self, texts: Sequence[str]) -> None:
        cut = sum(n > self.context_length for n in self.token_counts(texts))
        if cut:
            warn(
                f"{cut} of {len(texts)} texts are longer than {self.name}'s context length "
                f"({self.context_length} tokens) and were truncated"
            )

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts: float32, L2-normalised rows. Warns once if any text was truncated."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise InputError(f"texts must be strings; item {bad} is {type(texts[bad]).__name__} {texts[bad]!r}")
        self.warn_if_truncated(texts)
        out = []
        for i in range(0, len(texts), batch_size):
            feats = self.text_features(self.tokenize(texts[i : i + batch_size]))
            out.append(l2_normalise(feats).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def decode_tokens(self, ids: Sequence[int]) -> str:
        """The text of token ids of ``tokenize`` (special and padding tokens left out), for captioners."""
        raise NotImplementedError(f"{type(self).__name__} cannot turn token ids back into text")

    # --- model insides for prompt learning and singular-value tuning (cliplab.adapt) ----------------
    def token_embedding_module(self) -> torch.nn.Module:
        """The text tower's token-embedding layer (ids -> vectors); prompt learning edits its output."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its token embedding")

    def tower_modules(self) -> dict[str, torch.nn.Module]:
        """``{"image": ..., "text": ...}``: the encoder stacks whose linear layers may be tuned."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its towers")

    def text_features_from_embeddings(self, tokens: Any, edit: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Unnormalised text embeddings of ``tokens`` whose token embeddings (B, L, width) are replaced
        by ``edit(embeddings)`` before the rest of the text tower runs.

        The backend's own forward runs (positions, causal mask, pooling at its end token, projection),
        with a forward hook on :meth:`token_embedding_module`; gradients flow into ``edit``'s tensors.
        """
        handle = self.token_embedding_module().register_forward_hook(lambda _module, _inputs, output: edit(output))
        try:
            return self.text_features(tokens)
        finally:
            handle.remove()

    def linear_weights(self) -> list[LinearWeight]:
        """Every linear map of the two towers as (tower, owner module, parameter name, rows).

        ``nn.Linear`` layers give their ``weight``; ``nn.MultiheadAttention`` keeps q, k and v stacked
        in ``in_proj_weight`` (three row blocks, one entry each) and its output map in ``out_proj``.
        """
        found = []
        for tower, root in self.tower_modules().items():
            for name, module in root.named_modules():
                if isinstance(module, torch.nn.MultiheadAttention) and module.in_proj_weight is not None:
                    d = module.embed_dim
                    for i, part in enumerate(("q", "k", "v")):
                        found.append(LinearWeight(f"{tower}.{name}.{part}", module, "in_proj_weight", slice(i * d, (i + 1) * d)))
                elif isinstance(module, torch.nn.Linear):
                    found.append(LinearWeight(f"{tower}.{name}", module, "weight", slice(None)))
        return found

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, embed_dim={self.embed_dim}, device={self.device}, precision={self.precision!r})"
