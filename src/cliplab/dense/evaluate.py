"""``cliplab eval --task segmentation``: mIoU, pixel accuracy, per-class and foreground IoU of a
dense method on images with semantic masks, and an HTML report with the best and worst images."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cliplab.dense.datasets import MaskDataset
from cliplab.dense.metrics import SegmentationScores, image_miou
from cliplab.dense.overlay import overlay
from cliplab.dense.segment import BACKGROUND, DEFAULT_BACKGROUND_WORDS, Segmenter
from cliplab.errors import InputError
from cliplab.evaluate.runner import NOT_IN_JSON, RunResult, run_facts

# Background words for synthetic scenes: the generic word and the five textures they are drawn on.
SYNTHETIC_BACKGROUND_WORDS = ("background", "plain background", "striped background", "checkered background",
                              "dotted background", "noisy background")  # fmt: skip


def segmenter_for(model, dataset: MaskDataset, background: Sequence[str] | None = None, **options) -> Segmenter:
    """A :class:`Segmenter` whose class list matches the dataset's (background words when class 0 is background)."""
    has_background = dataset.classes[0] == BACKGROUND
    if has_background and background is None and options.get("threshold") is None:
        background = SYNTHETIC_BACKGROUND_WORDS if dataset.name.startswith("synthetic:") else DEFAULT_BACKGROUND_WORDS
    names = dataset.classes[1:] if has_background else dataset.classes
    return Segmenter(model, names, background=background if has_background else None, **options)


@dataclass
class SegmentationResult(RunResult):
    """A segmentation run: figures over the whole set, per-class IoU, each image's mIoU; the segmenter for reports."""

    method: str
    settings: dict[str, Any]  # the post-processing that ran: PAMR, region relabelling, a learned refiner
    metrics: dict[str, float]
    per_class_iou: dict[str, float]
    images: int
    seconds_per_image: float
    per_image: list[dict[str, Any]]
    segmenter: Any = field(repr=False, metadata=NOT_IN_JSON)
    task: str = "segmentation"


def seen_unseen(per_class_iou: dict[str, float], seen: Sequence[str]) -> dict[str, float]:
    """Mean IoU over the ``seen`` (training) classes and over the other classes, background excluded
    (open-vocabulary segmentation's split: train on one vocabulary, test on another); classes absent
    from the images and the predictions (IoU None) are left out, as in mIoU."""
    unknown = sorted(set(seen) - set(per_class_iou))
    if unknown:
        raise InputError(f"seen classes {', '.join(unknown)} are not among the dataset's classes ({', '.join(per_class_iou)})")
    scored = {c: v for c, v in per_class_iou.items() if v is not None}
    groups = {"seen_miou": [v for c, v in scored.items() if c in seen], "unseen_miou": [v for c, v in scored.items() if c not in seen and c != BACKGROUND]}
    return {name: float(np.mean(values)) for name, values in groups.items() if values}


def run_segmentation(model, dataset: MaskDataset, progress: bool = False, batch_size: int | None = None,
                     pretrained: str | None = None, trained=None, seen: Sequence[str] | None = None,
                     **options) -> SegmentationResult:  # fmt: skip
    """Segment every image of ``dataset``; figures over the whole set plus each image's own mIoU.

    trained: an :class:`~cliplab.dense.ovseg.OVSegmenter` to run instead of a training-free
    :class:`Segmenter` (``options`` then go to its ``segment``: ``proposals``). seen: the classes
    it was trained on, to report ``seen_miou`` and ``unseen_miou`` too.
    """
    from tqdm.auto import tqdm

    batch_size = batch_size or 32
    if trained is not None:
        from cliplab.dense.ovseg import BoundSegmenter

        if dataset.classes[0] != BACKGROUND:
            raise InputError(f"a trained segmenter labels background; {dataset.name}'s class 0 is {dataset.classes[0]!r}")
        segmenter = BoundSegmenter(trained, dataset.classes[1:], **options)
    else:
        segmenter = segmenter_for(model, dataset, **options)
    scores = SegmentationScores(dataset.classes)
    per_image, t0 = [], time.perf_counter()
    with tqdm(total=len(dataset), disable=not progress, desc="segment") as bar:
        for lo in range(0, len(dataset), batch_size):
            rows = [(dataset.ids[i], *dataset.load(i)) for i in range(lo, min(lo + batch_size, len(dataset)))]
            for (name, _, mask), seg in zip(rows, segmenter.many([image for _, image, _ in rows], batch_size)):
                scores.add(mask, seg.labels)
                per_image.append({"id": name, "miou": image_miou(mask, seg.labels, len(dataset.classes))})
            bar.update(len(rows))
    seconds = time.perf_counter() - t0
    figures = scores.figures()
    if seen is not None:
        figures.update(seen_unseen(figures["per_class_iou"], seen))
    return SegmentationResult(
        **run_facts(model, dataset.name, pretrained),
        method=segmenter.method,
        settings={"pamr": segmenter.refine == "pamr", "regions": segmenter.regions, "learned_refiner": segmenter.refiner is not None,
                  "trident": getattr(segmenter, "trident", False)},
        metrics={k: v for k, v in figures.items() if k != "per_class_iou"},
        per_class_iou=figures["per_class_iou"],
        images=len(dataset),
        seconds_per_image=seconds / max(1, len(dataset)),
        per_image=per_image,
        segmenter=segmenter,
    )


def segmentation_report(result: SegmentationResult, dataset: MaskDataset, n_examples: int = 4):
    """An HTML :class:`~cliplab.evaluate.report.Report`: figures, per-class IoU, the best and worst images."""
    from cliplab.evaluate.report import Report

    segmenter = result.segmenter
    report = Report(f"Segmentation: {result.model} on {result.dataset}", f"method {result.method}, {result.images} images")
    report.add_table("Run", {k: getattr(result, k) for k in ("model", "pretrained", "precision", "method", "images", "cliplab_version")})
    report.add_table("Figures", result.metrics)
    report.add_table("Per-class IoU", [{"class": c, "iou": v} for c, v in result.per_class_iou.items()])
    order = np.argsort([row["miou"] for row in result.per_image])
    index = {name: i for i, name in enumerate(dataset.ids)}
    picks = [("Best", order[::-1][:n_examples]), ("Worst", order[:n_examples])]
    for title, rows in picks:
        for r in rows:
            row = result.per_image[int(r)]
            image, mask = dataset.load(index[row["id"]])
            pred = overlay(image, segmenter(image).labels, dataset.classes)
            truth = overlay(image, np.where(mask == 255, 0, mask), dataset.classes, legend=False)
            report.add_figure(f"{title}: {row['id']} (mIoU {row['miou']:.3f})", _side_by_side(truth, pred),
                              caption="left: ground truth, right: prediction")  # fmt: skip
    return report


def _side_by_side(left, right) -> bytes:
    from PIL import Image

    scale = max(1, 192 // max(left.height, 1))
    left = left.resize((left.width * scale, left.height * scale), Image.NEAREST)
    right = right.resize((right.width * scale, right.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (left.width + right.width + 8, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 8, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
