"""``cliplab classify``: zero-shot labels for a collection of images, written as CSV."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    BatchSizeOption,
    CacheDirOption,
    CaptionColOption,
    ClassnamesOption,
    DecodeOption,
    EmbeddingOptions,
    ImageColOption,
    ImagesOption,
    LabelColOption,
    LanguageOption,
    ModelOption,
    NoCacheOption,
    OnConflict,
    OnConflictOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    WorkersOption,
    check_language,
    open_images,
    read_names,
    say_what_was_left_out,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError
from cliplab.files import atomic_write


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, probabilities) of the ``k`` most probable classes per row, best first (ties: lower index)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def predictions_csv(ids: Sequence[str], labels: Sequence[str], order: np.ndarray, scores: np.ndarray, sets: np.ndarray | None = None) -> str:
    """CSV text: ``id, label_1, score_1, ..., label_k, score_k`` (+ ``prediction_set``, labels joined by |)."""
    k = order.shape[1]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *[f"{name}_{j}" for j in range(1, k + 1) for name in ("label", "score")], *(["prediction_set"] if sets is not None else [])])
    for row, (id_, idx, sc) in enumerate(zip(ids, order, scores)):
        extra = ["|".join(labels[i] for i in np.flatnonzero(sets[row]))] if sets is not None else []
        writer.writerow([id_, *[v for i, s in zip(idx, sc) for v in (labels[i], f"{s:.6f}")], *extra])
    return buf.getvalue()


def print_summary(labels: Sequence[str], order: np.ndarray, scores: np.ndarray, n_skipped: int, accuracy: float | None) -> None:
    counts = Counter(order[:, 0].tolist())
    table = Table(title=f"{len(order)} images classified" + (f", {n_skipped} skipped" if n_skipped else ""))
    table.add_column("label")
    table.add_column("top-1 count", justify="right")
    table.add_column("mean top-1 score", justify="right")
    shown = sorted(range(len(labels)), key=lambda i: (-counts.get(i, 0), i))[:20]
    for i in shown:
        mean = float(scores[order[:, 0] == i, 0].mean()) if counts.get(i) else float("nan")
        table.add_row(labels[i], str(counts.get(i, 0)), "–" if np.isnan(mean) else f"{mean:.3f}")
    console = Console()
    console.print(table)
    if len(labels) > len(shown):
        console.print(f"... and {len(labels) - len(shown)} more labels")
    if accuracy is not None:
        console.print(f"top-1 accuracy against the dataset's labels: {accuracy:.4f}")


@app.command("classify")
def classify_command(
    images: ImagesOption = ...,
    classnames: ClassnamesOption = None,
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write: id, label_1, score_1, ..., label_k, score_k (scores are softmax probabilities)."),
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    templates: str = typer.Option("default", "--templates", help="Prompt templates: default, openai_imagenet, tip_adapter, or a .txt/.json file."),
    language: LanguageOption = None,
    k: int = typer.Option(3, "--top-k", min=1, help="Labels per image in the CSV (at most the number of classes)."),
    precision: PrecisionOption = DEFAULT_PRECISION,
    batch_size: BatchSizeOption = None,
    decode: DecodeOption = "auto",
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    workers: WorkersOption = None,
    image_col: ImageColOption = None,
    caption_col: CaptionColOption = None,
    label_col: LabelColOption = None,
    on_conflict: OnConflictOption = OnConflict.error,
    progress: ProgressOption = True,
    head: Optional[Path] = typer.Option(None, "--head", help="A head saved by cliplab adapt --export (or head.save): classify with it instead of zero-shot."),
    conformal_alpha: Optional[float] = typer.Option(None, "--conformal-alpha", help="With a --head exported with conformal sets: add each image's prediction set at this miscoverage (0.1: 90% of sets hold the true class)."),
) -> None:
    """Classify images zero-shot into the given class names, or with a saved head; write the top-k classes per image as CSV."""
    from cliplab.features import embed
    from cliplab.zeroshot import ZeroShotClassifier

    with user_errors(), warnings_as_lines():
        if (head is None) == (classnames is None) or (conformal_alpha is not None and head is None):
            raise InputError("pass --classnames for zero-shot, or --head (optionally with --conformal-alpha)")
        names = read_names(classnames, "--classnames") if head is None else None
        if check_language(language) is not None:
            if head is not None or templates != "default":
                raise InputError("--language picks the default template in that language; drop --templates (or --head), or drop --language")
            from cliplab.zeroshot.templates import language_templates

            templates = language_templates(language)
        if names is not None and len(names) < 2:  # a softmax over one class scores every image 1.000
            raise InputError(f"--classnames names one class ({names[0]}); classifying needs at least two, e.g. '{names[0]},other'")
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
        source = open_images(images, image_col, caption_col, label_col, on_conflict)
        clip, embed_kwargs = options.prepare()
        feats = embed(clip, source, **embed_kwargs)
        sets = None
        if head is None:
            probs = ZeroShotClassifier(clip, names, templates).fit().predict_proba(feats.X)
        else:
            from cliplab.adapt import load as load_head

            fitted = load_head(head, model=clip)
            names = [str(c) for c in fitted.classes_]
            probs = fitted.predict_proba(feats.X)
            if conformal_alpha is not None:
                if not hasattr(fitted, "predict_set"):
                    raise InputError(f"{head} holds no conformal calibration; export it with cliplab adapt --export")
                sets = fitted.set_params(alpha=conformal_alpha).predict_set(feats.X)
        order, scores = top_k(probs, min(k, len(names)))
        atomic_write(out, predictions_csv(feats.ids, names, order, scores, sets))
        say_what_was_left_out(feats, out)
    accuracy = None
    if feats.labels is not None and all(lab in names for lab in feats.labels if lab is not None):
        labelled = [(i, lab) for i, lab in zip(order[:, 0], feats.labels) if lab is not None]
        accuracy = float(np.mean([names[i] == lab for i, lab in labelled])) if labelled else None
    print_summary(names, order, scores, len(feats.skipped), accuracy)
    typer.echo(f"wrote {out}")
