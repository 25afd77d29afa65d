"""Few-shot and training-free adaptation heads, one-class inspection, calibration and conformal sets.

One-class detectors with a threshold set on held-out good images (``cliplab inspect``):
``fit_detector(X_good, "knn")`` -> ``Detector`` (``anomaly_score``, ``flag``, ``save``/``Detector.load``).

Every head is a scikit-learn estimator over L2-normalised embeddings (``fit``, ``predict``,
``predict_proba``, ``decision_function`` ((N,) for two classes, as scikit-learn's), ``score``;
``classes_`` = sorted unique labels) with ``class_scores`` for the (N, C) logits, and saves to one
safetensors file: ``head.save(path)`` / ``GDA.load(path)`` / ``cliplab.adapt.load(path, model=None)``.
"""

from cliplab.adapt.calibration import (
    ConformalClassifier,
    TemperatureScaling,
    mean_set_size,
    set_coverage,
)
from cliplab.adapt.compare import Task, run_comparison, summarise
from cliplab.adapt.export import export_best
from cliplab.adapt.gda import GDA
from cliplab.adapt.inspection import Detector, fit_detector, inspection_metrics
from cliplab.adapt.io import load
from cliplab.adapt.label_free import LabelFree, confident_per_class
from cliplab.adapt.linear import LinearProbe
from cliplab.adapt.nontransferable import NonTransferablePrompt, domain_features, nontransfer_metrics
from cliplab.adapt.oneclass import (
    GaussianOneClass,
    HypOneClass,
    KNNOneClass,
    one_class_metrics,
)
from cliplab.adapt.prompt import CoCoOp, CoOp
from cliplab.adapt.support import SupportSetAdapter
from cliplab.adapt.support_sets import (
    CaptionSource,
    DiffusersGenerator,
    GenerationSource,
    RetrievalSource,
    SceneGenerator,
    SupportSet,
    build_support_set,
    support_set_adapter,
)
from cliplab.adapt.svd import CLIPSVD
from cliplab.adapt.tip import TipAdapter, TipAdapterF

__all__ = [
    "CLIPSVD",
    "CoCoOp",
    "CoOp",
    "Detector",
    "GDA",
    "GaussianOneClass",
    "HypOneClass",
    "KNNOneClass",
    "LabelFree",
    "confident_per_class",
    "SupportSetAdapter",
    "SupportSet",
    "RetrievalSource",
    "GenerationSource",
    "CaptionSource",
    "SceneGenerator",
    "DiffusersGenerator",
    "build_support_set",
    "support_set_adapter",
    "ConformalClassifier",
    "LinearProbe",
    "NonTransferablePrompt",
    "domain_features",
    "nontransfer_metrics",
    "TemperatureScaling",
    "TipAdapter",
    "TipAdapterF",
    "Task",
    "export_best",
    "fit_detector",
    "inspection_metrics",
    "load",
    "run_comparison",
    "summarise",
    "one_class_metrics",
    "mean_set_size",
    "set_coverage",
]
