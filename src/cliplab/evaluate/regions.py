"""Localisation figures on synthetic test scenes of 1-2 objects (issue #21 §3): how well a model knows
what is where, beside the global figures of :mod:`cliplab.evaluate.scenes`.

- region accuracy: each object's box (from its instance mask, :func:`cliplab.data.regions.scene_regions`)
  embedded by ``model.encode_regions`` (the model's region prompter, or the dense features pooled over the box)
  and classified against the shape names (prompt-ensemble text weights, "default" templates);
- dense: plain ``naclip`` segmentation (no PAMR, no region relabelling) of the nine classes (background +
  the eight shapes): mIoU, foreground IoU, and the mean IoU of the shapes region training holds out
  (``HELD_OUT_SHAPES``, kept out of every region phrase by ``--region-exclude``).
"""

from __future__ import annotations

import numpy as np

from cliplab.data import synthetic
from cliplab.data.regions import mask_box

HELD_OUT_SHAPES = ("heart", "crescent")  # the shapes the region-training targets keep out of every region phrase


def region_boxes(records: list[synthetic.SceneRecord]) -> tuple[list[list[tuple[float, ...]]], list[str]]:
    """Per scene, the box of each visible object; and the shape of every box, in the same order."""
    boxes, shapes = [], []
    for record in records:
        kept = [(mask_box(mask), obj.shape) for obj, mask in zip(record.spec.objects, record.instance_masks)]
        kept = [(box, shape) for box, shape in kept if box is not None]
        boxes.append([box for box, _ in kept])
        shapes += [shape for _, shape in kept]
    return boxes, shapes


def region_accuracy(model, n: int, seed: int = 2026) -> float:
    """Share of the objects of ``n`` 1-2-object test scenes whose box ``model.encode_regions`` embeds
    nearest to the text weights of their own shape (zero-shot over the eight shapes)."""
    from cliplab.zeroshot.templates import ensemble_text_weights

    records = synthetic.generate(n, seed=seed, split="test", max_objects=2)
    boxes, shapes = region_boxes(records)
    rows = model.encode_regions([r.image for r in records], boxes)
    weights = ensemble_text_weights(model, list(synthetic.SHAPES), "default")
    predicted = np.asarray(synthetic.SHAPES)[(rows @ weights.T).argmax(1)]
    return float(np.mean(predicted == np.asarray(shapes)))


def dense_figures(model, n: int, seed: int = 2026) -> dict[str, float | None]:
    """Plain ``naclip`` on the ``n`` scenes of ``synthetic:n:seed`` (:func:`cliplab.dense.datasets.synthetic_masks`):
    ``miou``, ``foreground_iou`` and ``held_out_iou`` (mean IoU of ``HELD_OUT_SHAPES`` present in the
    masks or the predictions; None when neither shows any)."""
    from cliplab.dense.datasets import synthetic_masks
    from cliplab.dense.evaluate import run_segmentation

    result = run_segmentation(model, synthetic_masks(n, seed), method="naclip")  # no refine, no regions: the defaults
    held_out = [result.per_class_iou[s] for s in HELD_OUT_SHAPES if result.per_class_iou[s] is not None]
    return {"miou": result.metrics["miou"], "foreground_iou": result.metrics["foreground_iou"],
            "held_out_iou": float(np.mean(held_out)) if held_out else None}  # fmt: skip
