"""Generation metrics over an image collection: CLIPScore and RefCLIPScore of image-caption pairs,
CMMD against a reference image set, and the diversity of the set (Vendi, Schur-complement entropy).

Captions: each image's first caption is the candidate, its other captions the references; a
captions file (one line per image, in the collection's order) replaces the candidates and leaves
every caption of the collection as a reference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cliplab.data.sources import ImageSource
from cliplab.errors import InputError
from cliplab.evaluate.generation import (
    clip_score,
    cmmd,
    ref_clip_score,
    schur_complement_entropy,
    vendi_score,
)
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import (
    EmbedOptions,
    TaskResult,
    embed_source,
    header,
    open_images,
)


@dataclass
class GenerationResult(TaskResult):
    reference: str | None = None
    n_images: int = 0
    n_reference: int = 0
    sce_sigma: float = 0.5


def read_captions(path: str | os.PathLike, n: int) -> list[str]:
    """One caption per line; exactly ``n`` non-empty lines."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != n:
        raise InputError(f"captions file {os.fspath(path)!r} has {len(lines)} lines but there are {n} images; give one caption per image, in order")
    return lines


def run_generation(
    model,
    images: ImageSource | str | os.PathLike,
    captions: Sequence[str] | str | os.PathLike | None = None,
    reference: ImageSource | str | os.PathLike | None = None,
    opts: EmbedOptions | None = None,
    *,
    sce_sigma: float = 0.5,
    seed: int = 0,
    pretrained: str | None = None,
) -> GenerationResult:
    """``metrics``: ``clip_score`` (w = 2.5, each pair clamped), ``clip_score_100`` (torchmetrics'
    CLIPScore: w = 100, the mean clamped),
    ``ref_clip_score`` (when every image has a reference caption), ``cmmd`` (with ``reference``),
    ``vendi`` of the images, and ``sce_image`` / ``sce_text`` (Schur-complement entropy with
    prompts = the candidate captions; exact Gaussian kernel of width ``sce_sigma``, unit-length
    embeddings)."""
    opts = opts or EmbedOptions()
    src, name = open_images(images)
    X, items = embed_source(model, src, opts)
    metrics: dict[str, float] = {"vendi": vendi_score(X)}
    if captions is not None:
        candidates = list(captions) if isinstance(captions, (list, tuple)) else read_captions(captions, len(items))
        if len(candidates) != len(items):
            raise InputError(f"{len(candidates)} captions given for {len(items)} images")
        references = [it.captions for it in items]
    else:
        candidates = [it.captions[0] if it.captions else "" for it in items]
        references = [it.captions[1:] for it in items]
    if all(candidates):
        T = model.encode_texts(candidates)
        metrics["clip_score"] = clip_score(X, T)
        metrics["clip_score_100"] = clip_score(X, T, w=100.0, clamp="mean")
        if all(references):
            metrics["ref_clip_score"] = ref_clip_score(X, T, [model.encode_texts(r) for r in references])
        sce = schur_complement_entropy(X, T, sigma=sce_sigma, kernel="exact", seed=seed)
        metrics["sce_image"], metrics["sce_text"] = sce.image, sce.text
    elif captions is None and any(candidates):
        raise InputError(f"only some images of {name!r} have captions; CLIPScore needs one per image (or pass a captions file)")
    ref_name, n_ref = None, 0
    if reference is not None:
        ref_src, ref_name = open_images(reference)
        Y, _ = embed_source(model, ref_src, opts)
        metrics["cmmd"] = cmmd(X, Y)
        n_ref = len(Y)
    return GenerationResult(**header(model, name, "generation", pretrained), metrics=metrics, reference=ref_name, n_images=len(items), n_reference=n_ref, sce_sigma=sce_sigma)


def report(result: GenerationResult) -> Report:
    rep = Report(f"Generation metrics: {result.model} on {result.dataset}", f"{result.n_images} images" + (f"; reference {result.reference} ({result.n_reference})" if result.reference else ""))
    rep.add_table("Metrics", result.metrics, caption="CLIPScore w = 2.5 (Hessel et al., each pair clamped at 0) and w = 100 (torchmetrics, the mean clamped at 0); CMMD x1000 with sigma 10; Vendi with the cosine kernel")
    return rep
