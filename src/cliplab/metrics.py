"""``cliplab.metrics``: classification and retrieval metrics (CLIP_benchmark definitions), and the
metrics beyond accuracy: calibration, OOD detection, generation, representation geometry, fairness.

The implementations live in :mod:`cliplab.evaluate` (``metrics``, ``calibration``, ``ood``,
``generation``, ``representation``, ``fairness``); this is the short public name.
"""

from cliplab.evaluate.calibration import (
    brier,
    calibration_metrics,
    ece,
    ece_equal_mass,
    fit_temperature,
    mce,
    nll,
)
from cliplab.evaluate.fairness import (
    demographic_parity_difference,
    equalized_odds_difference,
    group_auroc,
    group_predictability,
    group_stats,
)
from cliplab.evaluate.generation import (
    clip_score,
    cmmd,
    ref_clip_score,
    schur_complement_entropy,
    vendi_score,
)
from cliplab.evaluate.metrics import (
    accuracy_at_k,
    classification_metrics,
    confusion_matrix,
    mean_per_class_recall,
    per_class_precision_recall,
    retrieval_metrics,
    topk_accuracies,
)
from cliplab.evaluate.ood import aupr, auroc, energy, fpr_at_tpr, max_logit, mcm, msp
from cliplab.evaluate.representation import (
    alignment,
    centre_modalities,
    modality_gap,
    modality_separability,
    uniformity,
)

__all__ = [
    "accuracy_at_k",
    "alignment",
    "aupr",
    "auroc",
    "brier",
    "calibration_metrics",
    "centre_modalities",
    "classification_metrics",
    "clip_score",
    "cmmd",
    "confusion_matrix",
    "demographic_parity_difference",
    "ece",
    "ece_equal_mass",
    "energy",
    "equalized_odds_difference",
    "fit_temperature",
    "fpr_at_tpr",
    "group_auroc",
    "group_predictability",
    "group_stats",
    "max_logit",
    "mce",
    "mcm",
    "mean_per_class_recall",
    "modality_gap",
    "modality_separability",
    "msp",
    "nll",
    "per_class_precision_recall",
    "ref_clip_score",
    "retrieval_metrics",
    "schur_complement_entropy",
    "topk_accuracies",
    "uniformity",
    "vendi_score",
]
