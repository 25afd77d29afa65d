"""``cliplab.metrics``: classification and retrieval metrics (CLIP_benchmark definitions).

The implementations live in :mod:`cliplab.evaluate.metrics`; this is the short public name.
"""

from cliplab.evaluate.metrics import (
    accuracy_at_k,
    classification_metrics,
    confusion_matrix,
    mean_per_class_recall,
    per_class_precision_recall,
    retrieval_metrics,
    topk_accuracies,
)

__all__ = [
    "accuracy_at_k",
    "classification_metrics",
    "confusion_matrix",
    "mean_per_class_recall",
    "per_class_precision_recall",
    "retrieval_metrics",
    "topk_accuracies",
]
