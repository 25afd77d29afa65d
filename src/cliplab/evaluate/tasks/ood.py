"""OOD detection: does the zero-shot head score in-distribution images above images from elsewhere?

The in-distribution set is labelled (its classes give the prompts); the OOD set only needs images.
Scores: MSP, max-logit, energy (over logit_scale * cosine) and MCM (softmax of cosine / tau).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cliplab.data.sources import ImageSource
from cliplab.errors import InputError
from cliplab.evaluate import task_plots
from cliplab.evaluate.ood import SCORES, detection_metrics, ood_scores
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import (
    HIDDEN,
    EmbedOptions,
    TaskResult,
    embed_source,
    header,
    open_images,
    zeroshot,
)


@dataclass
class OODResult(TaskResult):
    ood_dataset: str = ""
    n_in: int = 0
    n_out: int = 0
    mcm_temperature: float = 1.0
    scores_in: dict[str, np.ndarray] = field(default_factory=dict, metadata=HIDDEN)
    scores_out: dict[str, np.ndarray] = field(default_factory=dict, metadata=HIDDEN)


def run_ood(
    model,
    images: ImageSource | str | os.PathLike,
    ood_images: ImageSource | str | os.PathLike,
    classnames: Sequence[str] | None = None,
    templates: Any = None,
    opts: EmbedOptions | None = None,
    *,
    attribute: str | None = None,
    mcm_temperature: float = 1.0,
    pretrained: str | None = None,
) -> OODResult:
    """``metrics["<score>_auroc" | "<score>_aupr" | "<score>_fpr95"]`` for each score, in-distribution
    as the positive class. ``attribute`` labels synthetic in-distribution scenes."""
    opts = opts or EmbedOptions()
    src, name = open_images(images, attribute, labelled=True)
    out_src, out_name = open_images(ood_images)
    run = zeroshot(model, src, opts, classnames, templates)
    X_out, _ = embed_source(model, out_src, opts)
    if not len(X_out):
        raise InputError(f"no image of the OOD set {out_name!r} could be read")
    cos_out = X_out @ run.head.text_weights_.T
    s_in = ood_scores(run.cosines, model.logit_scale, mcm_temperature)
    s_out = ood_scores(cos_out, model.logit_scale, mcm_temperature)
    metrics: dict[str, float] = {}
    for score in SCORES:
        metrics.update(detection_metrics(s_in[score], s_out[score], prefix=f"{score}_"))
    return OODResult(
        **header(model, name, "ood", pretrained), metrics=metrics, ood_dataset=out_name, n_in=len(run.y), n_out=len(X_out),
        mcm_temperature=mcm_temperature, scores_in=s_in, scores_out=s_out,
    )  # fmt: skip


def table(result: OODResult) -> list[dict[str, Any]]:
    """One row per score: AUROC, AUPR-In, FPR at 95% TPR."""
    m = result.metrics
    return [{"score": s, "auroc": m[f"{s}_auroc"], "aupr": m[f"{s}_aupr"], "fpr95": m[f"{s}_fpr95"]} for s in SCORES]


def report(result: OODResult) -> Report:
    rep = Report(f"OOD detection: {result.model}", f"in-distribution {result.dataset} ({result.n_in}) against {result.ood_dataset} ({result.n_out})")
    rep.add_table("Detection", table(result), caption="in-distribution is the positive class; FPR of OOD images at 95% TPR")
    rep.add_figure("Score histograms", task_plots.score_histograms_png(result.scores_in, result.scores_out))
    return rep
