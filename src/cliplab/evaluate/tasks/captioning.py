"""Captioning: a captioner's captions of a collection scored against the collection's own captions,
with BLEU-1..4 and CIDEr-D (pycocoevalcap's scorers, ``cliplab.caption.metrics``) and CLIPScore /
RefCLIPScore (``cliplab.evaluate.generation``) under the captioner's model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cliplab.data.sources import ImageSource
from cliplab.errors import InputError
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import EmbedOptions, TaskResult, embed_features, header, open_images

EXAMPLES = 12  # captions kept for the report and the JSON


@dataclass
class CaptioningResult(TaskResult):
    captioner: str = ""
    n_images: int = 0
    beam: int = 1
    examples: list[dict[str, Any]] = field(default_factory=list)


def run_captioning(model, images: ImageSource | str | os.PathLike, captioner: Any = None, opts: EmbedOptions | None = None, *,
                   beam: int = 1, pretrained: str | None = None) -> CaptioningResult:  # fmt: skip
    """Caption ``images`` with ``captioner`` (a ``Captioner``, a captioner folder, or None: the bundled one of
    ``model``) and score the captions against each image's captions (every image needs at least one)."""
    from cliplab.caption import Captioner
    from cliplab.caption.metrics import caption_scores
    from cliplab.evaluate.generation import clip_score, ref_clip_score

    cap = captioner if isinstance(captioner, Captioner) else Captioner.load(captioner, model=model)
    src, name = open_images(images)
    feats, items = embed_features(cap.feature_model(), src, opts)
    references = [list(it.captions or []) for it in items]
    missing = sum(not refs for refs in references)
    if missing:
        raise InputError(f"{missing} of {len(items)} images of {name!r} have no caption to score against; captioning needs references (synthetic:<n>, a manifest with captions)")
    candidates = cap.caption_features(feats.X, beam=beam)
    metrics: dict[str, float] = caption_scores(candidates, references)
    X = cap.split_features(feats.X)[0].numpy()
    T = model.encode_texts(candidates)
    metrics["clip_score"] = clip_score(X, T)
    metrics["ref_clip_score"] = ref_clip_score(X, T, [model.encode_texts(r) for r in references])
    examples = [{"id": it.id, "caption": c, "references": r} for it, c, r in list(zip(items, candidates, references))[:EXAMPLES]]
    source = os.fspath(captioner) if isinstance(captioner, (str, os.PathLike)) else ("bundled" if captioner is None else "given")
    return CaptioningResult(**header(model, name, "captioning", pretrained), metrics=metrics, captioner=source, n_images=len(items),
                            beam=beam, examples=examples)  # fmt: skip


def report(result: CaptioningResult) -> Report:
    rep = Report(f"Captioning: {result.model} on {result.dataset}", f"{result.n_images} images; captioner {result.captioner}; beam {result.beam}")
    rep.add_table("Metrics", result.metrics, caption="BLEU and CIDEr-D by pycocoevalcap's scorers (punctuation dropped, lower case); "
                  "CLIPScore w = 2.5 and RefCLIPScore (Hessel et al. 2021) under the captioner's model")  # fmt: skip
    rep.add_table("Examples", [{"id": e["id"], "caption": e["caption"], "reference": e["references"][0]} for e in result.examples])
    return rep
