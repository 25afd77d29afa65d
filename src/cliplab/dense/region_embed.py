"""Region embeddings: one L2-normalised row per box of an image, in the joint image-text space.

A model with a region prompter (``model.region_prompter``) embeds a box with it: CLOC's learned prompter
(``cliplab train --objectives clip,cloc``, :mod:`cliplab.dense.prompter`) or the tower's masked class token
(``--prompter masked-class``, :mod:`cliplab.dense.masked_class`; ``cliplab:shapes-vit-dense`` ships with
it). Any other model pools its dense features (:mod:`cliplab.dense.features`, the ``auto`` method) over
the box, each cell weighted by the share of it the box covers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.data.regions import boxes_to_input
from cliplab.dense.box_pool import pool_boxes
from cliplab.errors import InputError
from cliplab.models.base import ImageInput, to_pil

Box = Sequence[float]


def input_boxes(model, image, boxes: Sequence[Box], index: int) -> np.ndarray:
    """``boxes`` of image ``index`` (pixels of the image as given) in the model's input pixels."""
    from cliplab.models.vision_parts import input_size

    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
    bad = [b for b in array if not (np.isfinite(b).all() and b[2] > b[0] and b[3] > b[1])]
    if bad:
        raise InputError(f"image {index}: box {list(bad[0])} is empty or not [x0, y0, x1, y1] with x1 > x0 and y1 > y0 (pixels)")
    mode = (getattr(model, "preprocess_cfg", None) or {}).get("resize_mode", "shortest")
    moved, _ = boxes_to_input(array, *image.size, input_size(model), mode)
    return moved


def default_method(parts) -> str:
    from cliplab.models.vision_parts import ViTParts

    return "naclip" if isinstance(parts, ViTParts) else "maskclip"


@torch.inference_mode()
def encode_regions(model, images: Sequence[ImageInput], boxes: Sequence[Sequence[Box]], batch_size: int = 64) -> np.ndarray:
    """(sum of len(boxes[i]), D) float32 rows: each box of each image, in order, L2-normalised."""
    from cliplab.dense.features import dense_features, patch_size
    from cliplab.models.vision_parts import vision_parts

    images = [to_pil(im) for im in images]
    if len(images) != len(boxes):
        raise InputError(f"encode_regions got {len(images)} images but {len(boxes)} box lists; give one list of boxes per image")
    prompter = getattr(model, "region_prompter", None)
    parts = vision_parts(model)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        rows = [(j, b) for j, im in enumerate(chunk) for b in input_boxes(model, im, boxes[start + j], start + j)]
        if not rows:
            continue
        pixels = model.preprocess_batch(chunk).to(model.device, model.input_dtype)
        box_rows = torch.tensor([[j, *b] for j, b in rows], dtype=torch.float32, device=model.device)
        if prompter is not None:
            rows_out = prompter.embed(model, parts, pixels, box_rows)
        else:
            rows_out = pool_boxes(dense_features(model, pixels, default_method(parts), parts=parts), box_rows, patch_size(parts))
        out.append(F.normalize(rows_out.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.embed_dim), np.float32)
