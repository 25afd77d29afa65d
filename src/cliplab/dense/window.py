"""Sliding-window inference: class logits per crop, upsampled bilinearly, averaged where crops overlap."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cliplab.errors import InputError

Tensor = torch.Tensor


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Crop starts along one axis (mmseg ``slide_inference``): every ``stride``, the last crop flush with the end."""
    n = max(length - crop + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride + crop, length) - crop, 0) for i in range(n)})


def pad_to_multiple(pixels: Tensor, multiple: int) -> Tensor:
    """Zero-pad (the mean colour after normalisation) bottom/right so both sides divide by ``multiple``."""
    h, w = pixels.shape[-2:]
    return F.pad(pixels, (0, -w % multiple, 0, -h % multiple))


def crop_logits(logits_fn: Callable[[Tensor], Tensor], crops: Tensor, multiple: int) -> Tensor:
    """Class logits (N, C, h, w) at the crops' own size: padded to the patch multiple, logits upsampled
    bilinearly to the padded size, then the padding cut off."""
    h, w = crops.shape[-2:]
    padded = pad_to_multiple(crops, multiple)
    logits = logits_fn(padded)
    logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
    return logits[..., :h, :w]


def sliding_logits(logits_fn: Callable[[Tensor], Tensor], pixels: Tensor, multiple: int, window: int | None = None,
                   stride: int | None = None, batch_size: int = 16) -> Tensor:  # fmt: skip
    """Class logits (C, H, W) for one preprocessed image (3, H, W).

    ``logits_fn`` maps a crop batch to low-resolution logits (N, C, h, w). ``window=None`` is one
    pass over the whole image; otherwise square crops of ``window`` pixels every ``stride``
    (default window // 2), with overlapping logits averaged (SCLIP/NACLIP ``forward_slide``).
    """
    if window is None:
        return crop_logits(logits_fn, pixels[None], multiple)[0]
    stride = stride or max(1, window // 2)
    if window < 1 or stride < 1:
        raise InputError(f"window and stride must be positive pixels, got window={window}, stride={stride}")
    _, height, width = pixels.shape
    boxes = [(y, x) for y in window_starts(height, window, stride) for x in window_starts(width, window, stride)]
    ch, cw = min(window, height), min(window, width)
    total = count = None
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        crops = torch.stack([pixels[:, y : y + ch, x : x + cw] for y, x in chunk])
        logits = crop_logits(logits_fn, crops, multiple)
        if total is None:
            total = logits.new_zeros((logits.shape[1], height, width))
            count = logits.new_zeros((1, height, width))
        for (y, x), crop in zip(chunk, logits):
            total[:, y : y + ch, x : x + cw] += crop
            count[:, y : y + ch, x : x + cw] += 1
    return total / count
