"""Segmentation metrics from one confusion matrix accumulated over a dataset (mmseg's convention:
IoU = total intersection / total union per class, over all images)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cliplab.errors import InputError

IGNORE = 255  # label value of pixels that no metric counts


class SegmentationScores:
    """Accumulates (true, predicted) label maps; reads mIoU, pixel accuracy, per-class and foreground IoU.

    Class 0 is background for :meth:`foreground_iou` (any non-zero class against 0).
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)
        self.confusion = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)

    def add(self, true: np.ndarray, pred: np.ndarray) -> None:
        true, pred = np.asarray(true), np.asarray(pred)
        if true.shape != pred.shape:
            raise InputError(f"label maps differ in shape: truth {true.shape}, prediction {pred.shape}")
        keep = true != IGNORE
        t, p = true[keep].astype(np.int64), pred[keep].astype(np.int64)
        n = len(self.classes)
        if t.size and (t.max() >= n or p.max() >= n or min(t.min(), p.min()) < 0):
            raise InputError(f"label values must be in 0..{n - 1} (or {IGNORE} to ignore)")
        self.confusion += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def per_class_iou(self) -> np.ndarray:
        """IoU per class; NaN for a class absent from both truth and predictions."""
        inter = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / union, np.nan)

    def miou(self) -> float:
        return float(np.nanmean(self.per_class_iou()))

    def pixel_accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.confusion.sum()))

    def foreground_iou(self) -> float:
        """IoU of 'any class but 0' in truth against the same in predictions."""
        fg_true, fg_pred = self.confusion[1:, :].sum(), self.confusion[:, 1:].sum()
        inter = self.confusion[1:, 1:].sum()
        union = fg_true + fg_pred - inter
        return float(inter / union) if union else float("nan")

    def figures(self) -> dict:
        return {"miou": self.miou(), "pixel_accuracy": self.pixel_accuracy(), "foreground_iou": self.foreground_iou(),
                "per_class_iou": {c: (None if np.isnan(v) else float(v)) for c, v in zip(self.classes, self.per_class_iou())}}  # fmt: skip


def image_miou(true: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """mIoU of a single image over the classes present in its truth or prediction (to rank images)."""
    scores = SegmentationScores([str(i) for i in range(n_classes)])
    scores.add(true, pred)
    return scores.miou()
