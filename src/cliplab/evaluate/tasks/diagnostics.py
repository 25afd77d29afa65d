"""Representation diagnostics of a captioned collection: the modality gap, how separable the two
modalities are, alignment and uniformity, and what centring each modality changes (including
caption retrieval)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from cliplab.data.sources import ImageSource
from cliplab.errors import InputError
from cliplab.evaluate.metrics import retrieval_metrics
from cliplab.evaluate.report import Report
from cliplab.evaluate.representation import centre_modalities, geometry
from cliplab.evaluate.tasks.base import (
    EmbedOptions,
    TaskResult,
    embed_source,
    header,
    open_images,
)


@dataclass
class DiagnosticsResult(TaskResult):
    n_pairs: int = 0


def run_diagnostics(model, images: ImageSource | str | os.PathLike, opts: EmbedOptions | None = None, *, seed: int = 0, pretrained: str | None = None) -> DiagnosticsResult:
    """For (image, first caption) pairs: ``metrics`` = geometry (``modality_gap``,
    ``modality_separability``, ``alignment``, ``uniformity_image``, ``uniformity_text``,
    ``mean_pair_cosine``, text-to-image and image-to-text ``recall@1``), each ``raw`` and ``centred``."""
    src, name = open_images(images)
    X, items = embed_source(model, src, opts or EmbedOptions())
    keep = [i for i, it in enumerate(items) if it.captions]
    if len(keep) < 2:
        raise InputError(f"diagnostics need at least 2 captioned images; {name!r} has {len(keep)}")
    img = X[keep]
    txt = model.encode_texts([items[i].captions[0] for i in keep])
    out = {}
    for label, centred in (("raw", False), ("centred", True)):
        figures = geometry(img, txt, seed=seed, centred=centred)
        a, b = centre_modalities(img, txt) if centred else (img, txt)
        r = retrieval_metrics(a.astype(np.float32), b.astype(np.float32), np.arange(len(a)), ks=(1,))
        figures["text_to_image_recall@1"] = r["image_retrieval_recall@1"]
        figures["image_to_text_recall@1"] = r["text_retrieval_recall@1"]
        out[label] = figures
    return DiagnosticsResult(**header(model, name, "diagnostics", pretrained), metrics=out, n_pairs=len(keep))


def report(result: DiagnosticsResult) -> Report:
    raw, centred = result.metrics["raw"], result.metrics["centred"]
    rep = Report(f"Representation diagnostics: {result.model} on {result.dataset}", f"{result.n_pairs} image-caption pairs")
    rep.add_table("Geometry, raw and with each modality centred", [{"metric": k, "raw": raw[k], "centred": centred[k]} for k in raw],
                  caption="gap: distance of the modality centroids; separability: balanced accuracy of a linear probe telling images from texts (0.5: none); alignment: mean squared pair distance; uniformity: log mean Gaussian potential")  # fmt: skip
    return rep
