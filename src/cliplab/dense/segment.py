"""Open-vocabulary segmentation: class names in, a label map and per-pixel class probabilities out.

    seg = cliplab.segment(model, "street.jpg", ["sky", "road", "car"])  # method "auto": by architecture
    seg.classes   # ["background", "sky", "road", "car"]
    seg.labels    # H x W ints into seg.classes
    seg.probs     # len(classes) x H x W, sums to 1 over classes
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.dense.attention import last_block
from cliplab.dense.features import dense_features, last_block_input, patch_size
from cliplab.dense.pamr import pamr
from cliplab.dense.regions import MaskPrompt, foreground_regions, region_probabilities
from cliplab.dense.trident import (
    aggregate,
    average_in_segments,
    global_affinity,
    masks_to_segments,
    splice_features,
    split_foreground,
    superpixels,
)
from cliplab.dense.window import crop_logits, pad_to_multiple, sliding_logits
from cliplab.errors import InputError, spelled
from cliplab.models.base import ImageInput, to_pil
from cliplab.models.vision_parts import ViTParts, input_size, pixel_normalisation, vision_parts
from cliplab.validation import check_classnames
from cliplab.zeroshot.templates import ensemble_text_weights

BACKGROUND = "background"
DEFAULT_BACKGROUND_WORDS = ("background",)
AUTO = "auto"  # the method chosen by the model's architecture (default_method)


def default_method(parts) -> str:
    """The dense method for a model's :func:`~cliplab.models.vision_parts.vision_parts`: ``naclip`` for
    a ViT (the best plain last-block method on shapes-vit: mIoU 0.154, clearclip 0.130, its model
    card); ``maskclip`` for a ResNet's attention pool, the only method designed for it
    (MaskCLIP, Zhou et al. 2022, sec. 3.2): the self-self attentions spread each of its few cells over
    the whole map (clearclip labelled five of six 3-object scenes one class on shapes-tiny)."""
    return "naclip" if isinstance(parts, ViTParts) else "maskclip"


class FeatureRefiner(Protocol):
    """Something that improves dense features using the crop they came from and predicts where the
    foreground is (e.g. :class:`~cliplab.dense.refine.CorrelationRefiner`)."""

    delta: float  # a non-salient pixel whose best class probability is below it becomes background

    def refine(self, model, pixels: torch.Tensor, feats: torch.Tensor, last_input=None) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class Segmentation:
    """A segmented image. ``classes``: names (``background`` first when background handling is on);
    ``labels``: (H, W) int64 indices into ``classes``; ``probs``: (C, H, W) float32, summing to 1 over C."""

    classes: list[str]
    labels: np.ndarray
    probs: np.ndarray

    def areas(self) -> dict[str, float]:
        """Fraction of the image each class covers."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.classes))
        return {name: float(c) / self.labels.size for name, c in zip(self.classes, counts)}


class Segmenter:
    """Segments many images with one model, one class list and one set of settings (text embedded once).

    method: vanilla | maskclip | sclip | clearclip | naclip (:mod:`cliplab.dense.attention`), or auto
        (:func:`default_method`: the one that works for the model's architecture).
    templates: prompt templates for each name (a template set name, a list, or a file; see
        :func:`cliplab.zeroshot.templates.resolve_templates`).
    background: words whose probabilities are summed into a ``background`` class put first (SCLIP's
        background synonyms); ``None`` or ``()`` for no background words.
    threshold: pixels whose best foreground probability is below it are labelled background
        (SCLIP/NACLIP ``prob_thd``); background handling is on when ``background`` or ``threshold`` is given.
    size: the short side, in pixels, the image is resized to before inference (default: the model's
        input size). window/stride: sliding-window crop and step in those pixels (default: one pass).
    refine: ``"pamr"`` for pixel-adaptive refinement (steps ``pamr_steps``, ``pamr_dilations`` in output pixels).
    logit_scale: softmax temperature of the cosine logits (default: the model's).
    refiner: an optional learned refiner (:class:`~cliplab.dense.refine.CorrelationRefiner`): it pools the
        dense features and, with background handling on, its non-salient pixels whose best class
        probability is below its ``delta`` become background (CLIP-DINOiser).
    trident: splice-then-segment for images larger than the model's input (:mod:`cliplab.dense.trident`):
        the dense features of ``window``-pixel crops every ``stride`` (default: the model's input size and
        half of it) spliced into one map and pooled with the patch affinities of a whole-image pass at
        ``trident_size`` pixels (default: the model's input size) give the background/foreground split;
        that pass's own features split the foreground into classes; logits are averaged inside
        ``proposals(image)`` masks when given, else inside SLIC superpixels of about
        ``superpixel_cell`` pixels a side (default: two patches at the inference size). ViTs only.
    regions: relabel each connected foreground region (of at least ``region_min_pixels``) with the class
        of an unmasked square crop around it, ``region_context`` times larger than the region (1.0: twice
        its side), embedded by the whole image tower (OVSeg-style mask classification with the dense
        segmentation as the proposal source). Needs background handling; the region's foreground
        probability is then split by the crop's class probabilities. ``region_weight`` λ < 1 mixes in
        the region's mean dense probabilities as OVSeg's ensemble does: p_crop^λ · p_dense^(1-λ).
    mask_prompt: with ``regions``, classify each region from its masked crop with these learned tokens
        on the blank patches instead of from the context crop (OVSeg mask prompt tuning,
        :func:`~cliplab.dense.regions.train_mask_prompt`).
    """

    def __init__(self, model, classes: Sequence[str], method: str = "auto", templates="default",
                 background: Sequence[str] | None = DEFAULT_BACKGROUND_WORDS, threshold: float | None = None,
                 size: int | None = None, window: int | None = None, stride: int | None = None,
                 refine: str | None = None, pamr_steps: int = 10, pamr_dilations: Sequence[int] = (8, 16),
                 logit_scale: float | None = None, naclip_std: float = 5.0,
                 refiner: FeatureRefiner | None = None, regions: bool = False, region_context: float = 1.0,
                 region_min_pixels: int = 10, region_weight: float = 1.0, trident: bool = False,
                 trident_size: int | None = None, superpixel_cell: int | None = None,
                 proposals: Callable[[Image.Image], np.ndarray] | None = None, mask_prompt: MaskPrompt | None = None) -> None:  # fmt: skip
        names = check_classnames(list(classes))
        words = list(background or ())
        self.background_on = bool(words) or threshold is not None
        if self.background_on and BACKGROUND in names:
            raise InputError(f"class {BACKGROUND!r} is added by background handling; drop it from the classes or pass "
                             f"{spelled('background=None', '--background none')}")  # fmt: skip
        if refine not in (None, "pamr"):
            raise InputError(f"unknown refinement {refine!r}; use 'pamr' or None")
        if regions and not self.background_on:
            raise InputError(f"{spelled('regions=True', '--regions')} relabels foreground regions, so it needs background handling "
                             f"({spelled('background words or a threshold', '--background words or --threshold')})")  # fmt: skip
        if mask_prompt is not None and not regions:
            raise InputError(f"a mask prompt classifies the foreground regions; add {spelled('regions=True', '--regions')}")
        if not 0 <= region_weight <= 1 or region_context < 0:
            raise InputError(f"region_weight is in [0, 1] and region_context >= 0, got {region_weight} and {region_context}")
        if threshold is not None and not 0 <= threshold <= 1:
            raise InputError(f"threshold is a probability in [0, 1], got {threshold}")
        self.parts = vision_parts(model)
        if trident and (not isinstance(self.parts, ViTParts) or refiner is not None):
            raise InputError(f"{spelled('trident=True', '--trident')} needs a ViT image tower and no learned refiner")
        method = default_method(self.parts) if method == AUTO else method
        last_block(method)  # fail early on an unknown method
        self.model, self.method = model, method
        self.classes = [BACKGROUND, *names] if self.background_on else names
        self.n_words = len(words)
        self.text = torch.from_numpy(ensemble_text_weights(model, [*words, *names], templates)).to(model.device)
        self.threshold, self.size, self.window, self.stride = threshold, size or input_size(model), window, stride
        self.refine, self.pamr_steps, self.pamr_dilations = refine, pamr_steps, tuple(pamr_dilations)
        self.logit_scale = float(logit_scale if logit_scale is not None else model.logit_scale)
        self.naclip_std, self.refiner = naclip_std, refiner
        self.gated = refiner is not None and self.background_on  # the refiner's foreground map rides as a last channel
        self.regions, self.region_context, self.region_min_pixels = regions, region_context, region_min_pixels
        self.region_weight, self.mask_prompt = region_weight, mask_prompt
        self.trident, self.trident_size = trident, trident_size or input_size(model)
        self.superpixel_cell, self.proposals = superpixel_cell, proposals
        mean, std = pixel_normalisation(model)
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def pixels(self, image: Image.Image, size: int | None = None) -> torch.Tensor:
        """The image resized so its short side is ``size`` (default ``self.size``), normalised, as (3, h, w)."""
        w, h = image.size
        scale = (size or self.size) / min(w, h)
        resized = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255).permute(2, 0, 1)
        return (x - self.mean) / self.std

    def crop_features(self, crops: torch.Tensor, last_input=None) -> torch.Tensor:
        """Dense features (N, E, h, w) of a crop batch by the segmenter's method."""
        return dense_features(self.model, crops, self.method, self.naclip_std, parts=self.parts, last_input=last_input)

    def class_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Scaled cosine logits (..., words + classes, h, w) of features (..., E, h, w)."""
        return self.logit_scale * torch.einsum("...ehw,ce->...chw", feats, self.text)

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Low-resolution class logits (N, words + classes, h, w) of a crop batch; when ``gated``, the
        refiner's foreground probability follows as one more channel (so windows average it too)."""
        last_input = None
        if self.refiner is not None and isinstance(self.parts, ViTParts):  # the refiner reads these tokens too: run the blocks once
            last_input = last_block_input(self.parts, crops.to(self.model.device, self.model.input_dtype))
        feats = self.crop_features(crops, last_input)
        foreground = None
        if self.refiner is not None:
            feats, foreground = self.refiner.refine(self.model, crops, feats, last_input)
        logits = self.class_logits(feats)
        return torch.cat([logits, foreground[:, None].to(logits.dtype)], dim=1) if self.gated else logits

    def _to_image_size(self, logits: torch.Tensor, image: Image.Image) -> torch.Tensor:
        return F.interpolate(logits[None].cpu(), size=(image.height, image.width), mode="bilinear", align_corners=False)[0]

    @torch.inference_mode()
    def logits(self, image: Image.Image) -> torch.Tensor:
        """Logits (words + classes, H, W) at the input image's size (plus the foreground channel when ``gated``)."""
        if self.trident:
            return self.trident_logits(image)
        pixels = self.pixels(image)
        logits = sliding_logits(self.crop_logits, pixels, patch_size(self.parts), self.window, self.stride)
        return self._to_image_size(logits, image)

    def trident_logits(self, image: Image.Image) -> torch.Tensor:
        """Trident's log-probabilities (words + classes, H, W): crops spliced, then pooled with the
        whole-image affinities, say where the foreground is; the whole-image pass, which sees every
        object entire, splits it into classes; both are averaged inside segments first."""
        multiple = patch_size(self.parts)
        window = self.window or input_size(self.model)
        spliced = splice_features(self.crop_features, self.pixels(image), multiple, window, self.stride or window // 2)
        whole = pad_to_multiple(self.pixels(image, self.trident_size), multiple).to(self.model.device, self.model.input_dtype)
        last_input = last_block_input(self.parts, whole[None])
        weights, grid = global_affinity(self.parts, last_input)
        local = self._to_image_size(self.class_logits(aggregate(spliced, weights, grid)), image)
        overall = self._to_image_size(self.class_logits(self.crop_features(whole[None], last_input)[0]), image)
        if self.proposals is not None:
            segments = masks_to_segments(np.asarray(self.proposals(image), dtype=bool))
        else:
            cell = self.superpixel_cell or round(2 * multiple * min(image.size) / self.size)
            segments = superpixels(np.asarray(image.convert("RGB")), cell)
        return split_foreground(average_in_segments(local, segments), average_in_segments(overall, segments), self.n_words)

    def _finish(self, image: Image.Image, logits: torch.Tensor) -> Segmentation:
        foreground = None
        if self.gated:
            logits, foreground = logits[:-1], logits[-1]
        probs = torch.softmax(logits, dim=0)
        if self.refine == "pamr":
            rgb = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
            probs = pamr(rgb, probs, self.pamr_steps, self.pamr_dilations)
        if self.background_on:
            probs = torch.cat([probs[: self.n_words].sum(0, keepdim=True), probs[self.n_words :]])
        labels = probs.argmax(0)
        if self.threshold is not None:
            labels[probs[1:].max(0).values < self.threshold] = 0
        if foreground is not None:  # CLIP-DINOiser: not salient and not a confident class -> background
            labels[(foreground < 0.5) & (probs[1:].max(0).values < self.refiner.delta)] = 0
        if self.regions:
            self._relabel_regions(image, labels, probs)
        return Segmentation(list(self.classes), labels.numpy().astype(np.int64), probs.numpy().astype(np.float32))

    def _relabel_regions(self, image: Image.Image, labels: torch.Tensor, probs: torch.Tensor) -> None:
        """Give each foreground region its crop's class, in place (``regions=True``)."""
        masks = foreground_regions(labels.numpy(), self.region_min_pixels)
        if not masks:
            return
        region_probs = region_probabilities(self.model, image, masks, self.text[self.n_words :], self.region_context, self.mask_prompt)
        for mask, p in zip(masks, torch.from_numpy(region_probs)):
            inside = torch.from_numpy(mask)
            if self.region_weight < 1:  # OVSeg's ensemble: p_crop^λ · p_dense^(1-λ), p_dense the region's mean
                dense = probs[1:, inside].mean(1)
                p = p.clamp_min(1e-12) ** self.region_weight * (dense / dense.sum()).clamp_min(1e-12) ** (1 - self.region_weight)
                p = p / p.sum()
            labels[inside] = 1 + int(p.argmax())
            probs[1:, inside] = (1 - probs[0, inside])[None] * p[:, None]

    @torch.inference_mode()
    def __call__(self, image: ImageInput) -> Segmentation:
        image = to_pil(image)
        return self._finish(image, self.logits(image))

    @torch.inference_mode()
    def many(self, images: Sequence[ImageInput], batch_size: int = 32) -> list[Segmentation]:
        """Segment several images; without a sliding window, images of one size share a forward pass."""
        images = [to_pil(im) for im in images]
        if self.window is not None or self.trident:
            return [self(im) for im in images]
        out: list[Segmentation] = []
        for lo in range(0, len(images), batch_size):
            chunk = images[lo : lo + batch_size]
            pixels = [self.pixels(im) for im in chunk]
            if len({p.shape for p in pixels}) > 1:
                out += [self(im) for im in chunk]
                continue
            logits = crop_logits(self.crop_logits, torch.stack(pixels), patch_size(self.parts))
            out += [self._finish(im, self._to_image_size(lg, im)) for im, lg in zip(chunk, logits)]
        return out


def segment(model, image: ImageInput, classes: Sequence[str], method: str = AUTO, templates="default",
            background: Sequence[str] | None = DEFAULT_BACKGROUND_WORDS, window: int | None = None,
            stride: int | None = None, **options) -> Segmentation:  # fmt: skip
    """Segment ``image`` into ``classes`` (plus ``background`` first, by default); see :class:`Segmenter`
    for every option."""
    return Segmenter(model, classes, method, templates, background, window=window, stride=stride, **options)(image)
