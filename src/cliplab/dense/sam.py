"""An optional SAM mask proposer (Kirillov et al. 2023), loaded only from weights the user points at.

    sam = SamProposer.from_checkpoint("sam_vit_b_01ec64.pth")  # kind inferred from the weights
    masks, scores = sam.propose(image)   # (K, H, W) bool, (K,) predicted IoUs

The official checkpoints are plain state dicts; they load with ``torch.load(weights_only=True)``
into the ``segment-anything`` package's model (``pip install 'cliplab[sam]'``), and its automatic
mask generator (a grid of point prompts, filtered by predicted IoU and stability, box NMS) gives
class-agnostic masks. They stand wherever the trained proposer's masks do:
:meth:`cliplab.dense.OVSegmenter.segment` proposals and Trident's refinement segments. Nothing
downloads.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from cliplab.errors import InputError
from cliplab.models.base import ImageInput, to_pil

PATCH_KEY = "image_encoder.patch_embed.proj.weight"
KINDS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}  # the image encoder's width -> the registry's name
DEPTHS = {"vit_b": 12, "vit_l": 24, "vit_h": 32}
INSTALL = "pip install 'cliplab[sam]'"


class MaskGenerator(Protocol):
    """What :class:`SamProposer` calls: segment-anything's ``SamAutomaticMaskGenerator`` or a stand-in."""

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]: ...


def segment_anything():
    """The ``segment_anything`` module, or a one-line error saying how to install it."""
    try:
        import segment_anything as sam
    except ImportError as exc:
        raise InputError(f"the SAM proposer needs the segment-anything package: {INSTALL}") from exc
    return sam


def sam_kind(state: dict[str, torch.Tensor]) -> str:
    """``vit_b``, ``vit_l`` or ``vit_h`` from an official SAM state dict's image-encoder shapes."""
    if PATCH_KEY not in state:
        raise InputError(f"not a SAM checkpoint: no {PATCH_KEY!r} (pass an official sam_vit_[b|l|h] .pth file)")
    width = int(state[PATCH_KEY].shape[0])
    if width not in KINDS:
        raise InputError(f"not a SAM checkpoint: image encoder width {width}, expected one of {sorted(KINDS)}")
    kind = KINDS[width]
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    if depth != DEPTHS[kind]:
        raise InputError(f"not a SAM checkpoint: {kind} width with {depth} encoder blocks, expected {DEPTHS[kind]}")
    return kind


def load_sam(path: str | os.PathLike, kind: str | None = None, device: str = "cpu") -> torch.nn.Module:
    """The SAM model of an official checkpoint (a ``.pth`` state dict), in eval mode on ``device``.

    kind: ``vit_b`` / ``vit_l`` / ``vit_h``, or None to infer it from the weights' shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"SAM weights not found: {path} (download an official sam_vit_*.pth checkpoint and pass its path)")
    sam = segment_anything()  # before reading 2.5 GB: fail first on a missing package
    if kind is not None and kind not in DEPTHS:
        raise InputError(f"unknown SAM kind {kind!r}; use one of {', '.join(DEPTHS)} or leave it out to infer it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError, ValueError) as exc:  # a pickle of something else, not a torch file, cut short
        raise InputError(f"{path} is not a SAM checkpoint (a torch state dict): {type(exc).__name__}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} is not a SAM checkpoint: expected a state dict of tensors")
    inferred = sam_kind(state)
    if kind is not None and kind != inferred:
        raise InputError(f"{path} holds SAM {inferred} weights, not {kind}")
    model = sam.sam_model_registry[inferred](checkpoint=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path} does not fit SAM {inferred}: {str(exc).splitlines()[0]}") from exc
    return model.to(device).eval()


class SamProposer:
    """Class-agnostic binary masks of an image from a mask generator, largest score first.

    min_pixels: masks smaller than this (at the image's size) are dropped.
    """

    def __init__(self, generator: MaskGenerator, min_pixels: int = 4) -> None:
        self.generator, self.min_pixels = generator, min_pixels

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, kind: str | None = None, device: str = "cpu", points_per_side: int = 32,
                        pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95, min_pixels: int = 4) -> SamProposer:  # fmt: skip
        """A proposer over :func:`load_sam`'s model with segment-anything's automatic mask generator
        (its defaults: 32x32 point prompts, predicted IoU >= 0.88, stability >= 0.95)."""
        model = load_sam(path, kind, device)
        generator = segment_anything().SamAutomaticMaskGenerator(model, points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                                                                 stability_score_thresh=stability_score_thresh)  # fmt: skip
        return cls(generator, min_pixels)

    @torch.inference_mode()
    def propose(self, image: ImageInput) -> tuple[np.ndarray, np.ndarray]:
        """Binary masks (K, H, W) at the image's size and their predicted IoUs (K,), best first."""
        image = to_pil(image)
        found = [r for r in self.generator.generate(np.asarray(image.convert("RGB"))) if int(np.sum(r["segmentation"])) >= self.min_pixels]
        found.sort(key=lambda r: -float(r["predicted_iou"]))
        masks = np.zeros((len(found), image.height, image.width), dtype=bool)
        for m, r in zip(masks, found):
            m[:] = np.asarray(r["segmentation"], dtype=bool)
        return masks, np.array([float(r["predicted_iou"]) for r in found], dtype=np.float32)

    def __call__(self, image: ImageInput) -> np.ndarray:
        """The masks only (what Trident's ``proposals`` takes)."""
        return self.propose(image)[0]
