"""Trident for images larger than the model's input (Shi et al., ICCV 2025): splice, then segment.

Sliding windows segment each crop alone and splice the results, so no pixel sees further than its
window. Trident instead:

1. computes dense features of each sub-image (``window`` pixels every ``stride``) and splices them
   into one token map, averaging where crops overlap (``trident.py``: the global canvas);
2. aggregates that map with the patch correlations of one pass over the whole image: SAM's last
   attention, kept where the heads' value cosines exceed θ = min(0.9, 1.2·mean) and row-normalised
   (``get_sam_sim``). Here the whole-image view is the same CLIP on the image downscaled to
   ``size`` pixels (the SAM stand-in of the reference's offline adaptation, option (a));
3. refines the coarse logits inside masks: a trained proposer's, or SLIC superpixels
   (scikit-image) when there is none (the stand-in for SAM prompting).

One change for small CLIPs: the spliced map decides only background against foreground; the
whole-image pass, which sees every object entire, splits the foreground into classes
(:func:`split_foreground`). A 64-px window sees a part of an object four times its size, and
cliplab:shapes-vit names parts badly: on 256-px scenes Trident's plain pooled map labels every shape
but the circle with IoU 0 (mIoU 0.110 against 0.168 with the split; benchmarks/segment_quality.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.dense.window import pad_to_multiple, window_starts
from cliplab.errors import InputError
from cliplab.models.vision_parts import ViTParts

Tensor = torch.Tensor


def splice_features(features_fn: Callable[[Tensor], Tensor], pixels: Tensor, multiple: int, window: int, stride: int,
                    batch_size: int = 16) -> Tensor:  # fmt: skip
    """Dense features (E, h, w) of one preprocessed image (3, H, W) on its whole patch grid, spliced
    from crops of ``window`` pixels every ``stride``, averaged where crops overlap (Trident step 3).

    ``features_fn`` maps a crop batch to features (N, E, window/multiple, window/multiple); the
    image is padded to the patch ``multiple`` and window and stride must be multiples of it, so every
    crop's tokens land on the global grid. One crop covering the image is one plain pass.
    """
    if window < 1 or stride < 1 or window % multiple or stride % multiple:
        raise InputError(f"Trident's window and stride are positive multiples of the patch size {multiple}, got {window} and {stride}")
    padded = pad_to_multiple(pixels, multiple)
    _, height, width = padded.shape
    ch, cw = min(window, height), min(window, width)
    boxes = [(y, x) for y in window_starts(height, ch, stride) for x in window_starts(width, cw, stride)]
    canvas = count = None
    for lo in range(0, len(boxes), batch_size):
        chunk = boxes[lo : lo + batch_size]
        feats = features_fn(torch.stack([padded[:, y : y + ch, x : x + cw] for y, x in chunk]))
        if canvas is None:
            canvas = feats.new_zeros((feats.shape[1], height // multiple, width // multiple))
            count = feats.new_zeros((1, height // multiple, width // multiple))
        th, tw = feats.shape[-2:]
        for (y, x), f in zip(chunk, feats):
            canvas[:, y // multiple : y // multiple + th, x // multiple : x // multiple + tw] += f
            count[:, y // multiple : y // multiple + th, x // multiple : x // multiple + tw] += 1
    return canvas / count


def global_affinity(parts: ViTParts, last_input: tuple[Tensor, tuple[int, int]], cos_factor: float = 1.2) -> tuple[Tensor, tuple[int, int]]:
    """Row-normalised patch affinities W (N, N) of one whole-image pass and its grid, from the
    :func:`~cliplab.dense.features.last_block_input` of that pass (one image).

    Trident's ``get_sam_sim``: per head, the last block's attention A is kept where the cosine of
    the value vectors exceeds θ = min(0.9, cos_factor · mean cosine), zero elsewhere; heads are
    averaged and rows normalised. The class token takes no part.
    """
    x, grid = last_input
    q, k, v = (t[:, :, 1:].float() for t in parts.qkv(parts.ln_1(x)))
    attn = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)
    vn = F.normalize(v, dim=-1)
    cos = vn @ vn.transpose(-2, -1)
    theta = (cos_factor * cos.mean(dim=(-2, -1), keepdim=True)).clamp_max(0.9)
    weights = torch.where(cos > theta, attn, torch.zeros_like(attn)).mean(dim=1)[0]
    return weights / weights.sum(-1, keepdim=True).clamp_min(1e-12), grid


def aggregate(features: Tensor, weights: Tensor, grid: tuple[int, int]) -> Tensor:
    """The spliced features (E, h, w) resized to the affinity ``grid`` and pooled, out = W·V, then
    L2-normalised per token (Trident: the CLIP map is resized to the SAM grid before W applies)."""
    values = F.interpolate(features[None], size=grid, mode="bilinear", align_corners=False)[0].flatten(1)
    pooled = values @ weights.T.to(values.dtype)
    return F.normalize(pooled, dim=0).reshape(features.shape[0], *grid)


def superpixels(image: np.ndarray, cell: int, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels (H, W) ints of an RGB uint8 image, about one per ``cell`` x ``cell`` pixels."""
    from skimage.segmentation import slic

    h, w = image.shape[:2]
    return slic(image, n_segments=max(1, (h * w) // (cell * cell)), compactness=compactness, start_label=0)


def masks_to_segments(masks: np.ndarray) -> np.ndarray:
    """One segment id per pixel from (K, H, W) boolean masks: the first mask covering it, or -1."""
    segments = np.full(masks.shape[1:], -1, dtype=np.int64)
    for k in range(len(masks) - 1, -1, -1):
        segments[masks[k]] = k
    return segments


def average_in_segments(logits: Tensor, segments: np.ndarray) -> Tensor:
    """Logits (C, H, W) with each segment's pixels set to the segment's mean (segment -1: unchanged)."""
    ids = torch.from_numpy(segments.astype(np.int64)).flatten()
    flat = logits.flatten(1)
    inside = ids >= 0
    n = int(ids.max()) + 1 if inside.any() else 0
    if n == 0:
        return logits
    sums = flat.new_zeros((flat.shape[0], n)).index_add_(1, ids[inside], flat[:, inside])
    counts = torch.bincount(ids[inside], minlength=n).clamp_min(1).to(flat.dtype)
    out = flat.clone()
    out[:, inside] = (sums / counts)[:, ids[inside]]
    return out.view_as(logits)


def split_foreground(local: Tensor, overall: Tensor, n_words: int) -> Tensor:
    """Log-probabilities (words + classes, H, W): the background words' probabilities of ``local``
    logits, and its foreground probability split among the classes by ``overall``'s class softmax
    (the same split as the region relabelling of :class:`~cliplab.dense.segment.Segmenter`). With no
    background words every pixel is foreground and ``overall`` alone decides."""
    p_local = torch.softmax(local, dim=0)
    foreground = p_local[n_words:].sum(0, keepdim=True)
    classes = foreground * torch.softmax(overall[n_words:], dim=0)
    return torch.log(torch.cat([p_local[:n_words], classes]).clamp_min(1e-12))
