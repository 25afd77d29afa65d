"""Robustness to common corruptions: zero-shot accuracy on clean images and on each ImageNet-C
corruption at each severity (``cliplab.evaluate.corruptions``), with corruption errors against
the clean error."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cliplab.data.images import decode_image
from cliplab.data.sources import ImageSource
from cliplab.evaluate import task_plots
from cliplab.evaluate.corruptions import check_corruptions, corrupt
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import (
    EmbedOptions,
    TaskResult,
    header,
    open_images,
    zeroshot,
)

DEFAULT_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur", "zoom_blur",
                       "fog", "brightness", "contrast", "jpeg_compression", "pixelate")  # fmt: skip


@dataclass
class RobustnessResult(TaskResult):
    corruptions: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=list)
    n_images: int = 0
    seed: int = 0


def corruption_errors(clean_acc1: float, acc: dict[str, dict[int, float]]) -> dict[str, Any]:
    """Per corruption, CE = mean over severities of the error (1 - acc1) and relative CE = mean of
    (error - clean error); then their means over corruptions (mCE, relative mCE). ImageNet-C
    divides each CE by AlexNet's; here the reference is the model's own clean error."""
    clean_err = 1.0 - clean_acc1
    ce = {c: float(np.mean([1.0 - a for a in by_sev.values()])) for c, by_sev in acc.items()}
    rel = {c: float(np.mean([(1.0 - a) - clean_err for a in by_sev.values()])) for c, by_sev in acc.items()}
    return {
        "corruption_error": ce,
        "relative_corruption_error": rel,
        "mean_corruption_error": float(np.mean(list(ce.values()))),
        "relative_mean_corruption_error": float(np.mean(list(rel.values()))),
    }


def run_robustness(
    model,
    images: ImageSource | str | os.PathLike,
    corruptions: Sequence[str] = DEFAULT_CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    classnames: Sequence[str] | None = None,
    templates: Any = None,
    opts: EmbedOptions | None = None,
    *,
    attribute: str | None = None,
    seed: int = 0,
    pretrained: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> RobustnessResult:
    """``metrics``: ``clean_acc1``, ``corruptions[name][severity]`` (acc1), ``corruption_error``,
    ``mean_corruption_error`` and their relative forms. Image i under corruption c at severity s
    draws its randomness from a generator seeded by (seed, c, s, i)."""
    corruptions, severities = list(corruptions), [int(s) for s in severities]
    check_corruptions(corruptions, severities)
    step = on_step or (lambda text: None)
    opts = opts or EmbedOptions()
    src, name = open_images(images, attribute, labelled=True)
    step("embedding clean images")
    run = zeroshot(model, src, opts, classnames, templates)
    clean = [decode_image(it.read_bytes(), it.id) for it in run.items]
    clean_acc1 = float(np.mean(run.logits.argmax(1) == run.y))
    acc: dict[str, dict[int, float]] = {}
    for c in corruptions:
        key = zlib.crc32(c.encode())  # stable across processes, unlike hash()
        acc[c] = {}
        for s in severities:
            step(f"{c}, severity {s}")
            shown = [corrupt(im, c, s, np.random.default_rng([seed, key, s, i])) for i, im in enumerate(clean)]
            emb = model.encode_images(shown, batch_size=opts.batch_size_for(model))
            acc[c][s] = float(np.mean(run.head.class_scores(emb).argmax(1) == run.y))
    metrics = {"clean_acc1": clean_acc1, "corruptions": acc, **corruption_errors(clean_acc1, acc)}
    return RobustnessResult(
        **header(model, name, "robustness", pretrained), metrics=metrics, corruptions=corruptions, severities=severities,
        n_images=len(clean), seed=seed,
    )  # fmt: skip


def report(result: RobustnessResult) -> Report:
    m = result.metrics
    rep = Report(f"Robustness: {result.model} on {result.dataset}", f"{result.n_images} images, ImageNet-C corruptions")
    rep.add_table("Summary", {k: m[k] for k in ("clean_acc1", "mean_corruption_error", "relative_mean_corruption_error")})
    grid = np.array([[m["corruptions"][c][s] for s in result.severities] for c in result.corruptions])
    rep.add_figure("Accuracy per corruption and severity", task_plots.heatmap_png(grid, result.corruptions, result.severities, "acc1", "severity", "corruption"),
                   caption=f"clean acc1 = {m['clean_acc1']:.3f}")  # fmt: skip
    rep.add_table("Per corruption", [
        {"corruption": c, **{f"severity {s}": m["corruptions"][c][s] for s in result.severities},
         "CE": m["corruption_error"][c], "relative CE": m["relative_corruption_error"][c]}
        for c in result.corruptions
    ])  # fmt: skip
    return rep
