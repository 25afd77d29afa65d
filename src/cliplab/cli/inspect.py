"""``cliplab inspect fit`` / ``inspect score``: one-class inspection from good images only."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from cliplab.cli import app
from cliplab.cli.adapt import one_torch_thread
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    BatchSizeOption,
    CacheDirOption,
    DecodeOption,
    EmbeddingOptions,
    ImagesOption,
    ModelOption,
    NoCacheOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    ReportOption,
    WorkersOption,
    read_names,
    say_what_was_left_out,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError

inspect_app = typer.Typer(
    help="One-class inspection: fit a detector on good images only, then flag the images that do not look like them.",
    no_args_is_help=True,
)
app.add_typer(inspect_app, name="inspect")

Method = Enum("Method", {name: name for name in ("knn", "gaussian", "hypoc")}, type=str)  # --method's choices
FalseAlarmOption = Annotated[float, typer.Option("--false-alarm", help="Target share of good images flagged: the threshold is set so that this share of the held-out good images score above it.")]


def parse_params(values: List[str]) -> dict[str, Any]:
    """``--param k=10 --param hidden=[64]``: values read as JSON, else kept as text."""
    params: dict[str, Any] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--param takes NAME=VALUE, e.g. --param k=10; got {text!r}")
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


def thumbnails(source, ids):
    """A function row -> small image of the item with that feature id (for report grids)."""
    from cliplab.evaluate.eval_report import thumbnail

    items = {item.id: item for item in source.items}
    return lambda row: thumbnail(items[ids[row]])


@inspect_app.command("fit")
def fit_command(
    normal: str = typer.Option(..., "--normal", help="Good images only: a folder, a manifest, shards or synthetic:<n>[:seed]."),
    out: Path = typer.Option(..., "--out", "-o", help="Detector folder to write (absent or empty): detector.safetensors, detector.json and report.html."),
    method: Method = typer.Option("knn", "--method", help="knn (mean cosine distance to the k nearest good images), gaussian (Mahalanobis distance, Ledoit-Wolf covariance) or hypoc (Hyp-OC: hyperbolic classifier against Gaussian pseudo-negatives)."),
    false_alarm: FalseAlarmOption = 0.05,
    held_out: Optional[str] = typer.Option(None, "--held-out", help="Separate good images to set the threshold on; omitted: --held-out-fraction of --normal is held out and not fitted on."),
    held_out_fraction: float = typer.Option(0.2, "--held-out-fraction", help="Share of --normal held out to set the threshold when --held-out is not given."),
    param: List[str] = typer.Option([], "--param", help="A parameter of the method as NAME=VALUE, repeatable: k=10 (knn), epochs=60 or hidden=[256] (hypoc)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the held-out draw and of hypoc's training."),
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    batch_size: BatchSizeOption = None,
    decode: DecodeOption = "auto",
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    workers: WorkersOption = None,
    progress: ProgressOption = True,
) -> None:
    """Fit a one-class detector on good images and set its threshold on held-out good images at the target false-alarm rate.

    The detector folder records the model (spec, weights, precision, identity), the method and its
    parameters, the threshold and the false-alarm rate measured on the held-out good images;
    cliplab inspect score refuses embeddings of another model.
    """
    from cliplab.adapt.inspection import fit_detector, inspection_report, record_model
    from cliplab.data.sources import open_source
    from cliplab.features import embed

    method_name = getattr(method, "value", method)
    with user_errors(), warnings_as_lines():
        if not 0.0 < false_alarm < 1.0:
            raise InputError(f"--false-alarm must be in (0, 1), got {false_alarm}")
        if not 0.0 < held_out_fraction < 1.0:
            raise InputError(f"--held-out-fraction must be in (0, 1), got {held_out_fraction}")
        params = parse_params(param)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty; choose a new detector folder")
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
        normal_source = open_source(normal)
        held_source = open_source(held_out) if held_out is not None else None
        clip, kw = options.prepare()
        feats = embed(clip, normal_source, **kw)
        if not len(feats):
            raise InputError(f"--normal {normal} gave no images to fit on")
        labels = sorted({str(lab) for lab in feats.labels or [] if lab is not None})
        if len(labels) > 1:
            typer.echo(f"note: --normal has images labelled {', '.join(labels[:5])}; all of them are taken as good", err=True)
        held_feats = embed(clip, held_source, **kw) if held_source is not None else None
        with one_torch_thread():  # hypoc's small steps (see cliplab adapt)
            detector = fit_detector(feats.X, method_name, false_alarm, X_held_out=None if held_feats is None else held_feats.X,
                                    held_out=held_out_fraction, params=params, random_state=seed,
                                    model=record_model(clip, pretrained), normal_labels=labels, source=normal)  # fmt: skip
        if held_feats is None:
            held_ids, shown = [feats.ids[int(r)] for r in detector.held_out_rows], normal_source
        else:
            held_ids, shown = held_feats.ids, held_source
        report = inspection_report(detector, held_ids, detector.held_out_scores, thumbnails(shown, held_ids),
                                   title="One-class detector: held-out good images", show_held_out=False)  # fmt: skip
        detector.save(out, report=report)
        say_what_was_left_out(feats, out)
        if held_feats is not None:
            say_what_was_left_out(held_feats, out / "held_out")  # its list: DIR/held_out.skipped.csv
    typer.echo(f"fitted {method_name} on {detector.n_fit} good images; threshold {detector.threshold:.6g} flags "
               f"{detector.held_out_false_alarm:.1%} of {detector.n_held_out} held-out good images (target {false_alarm:.1%})")  # fmt: skip
    typer.echo(f"wrote {out}")


@inspect_app.command("score")
def score_command(
    images: ImagesOption = ...,
    detector_dir: Path = typer.Option(..., "--detector", "-d", help="Detector folder written by cliplab inspect fit."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write: id, anomaly_score (higher: more anomalous), flagged (1: above the detector's threshold)."),
    report: ReportOption = None,
    metrics_out: Optional[Path] = typer.Option(None, "--metrics", help="Also write a JSON summary: the detector, counts and, when --images has labels, AUROC, AUPR, APCER, BPCER, ACER and HTER."),
    normal_label: Optional[str] = typer.Option(None, "--normal-label", help="Labels of --images that are good ('good' or 'good,ok'); every other label is an anomaly. Default: the labels of the detector's good images, else good and normal."),
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    batch_size: BatchSizeOption = None,
    decode: DecodeOption = "auto",
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    workers: WorkersOption = None,
    progress: ProgressOption = True,
) -> None:
    """Score images with a fitted detector: write each image's anomaly score and whether it is flagged as CSV.

    When --images has labels (a folder with good/ and defect subfolders, or a manifest's label
    column), also measure AUROC, AUPR and, at the detector's threshold, APCER (anomalies passed),
    BPCER (good images flagged), ACER (worst anomaly kind) and HTER. The threshold was set on
    held-out good images at fit time, never on the images scored here.
    """
    from cliplab.adapt.inspection import Detector, anomaly_truth, inspection_metrics, inspection_report, scores_csv
    from cliplab.data.sources import open_source
    from cliplab.features import embed
    from cliplab.files import atomic_write, write_json

    with user_errors(), warnings_as_lines():
        detector = Detector.load(detector_dir)
        normal_labels = read_names(normal_label, "--normal-label") if normal_label is not None else (detector.normal_labels or ["good", "normal"])
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
        source = open_source(images)
        kw = options.embed_kwargs()  # contradicting flags fail before the model loads
        clip = options.load_model()
        detector.check_model(clip, where=f"detector {detector_dir}")
        feats = embed(clip, source, **kw)
        if not len(feats):
            raise InputError(f"--images {images} gave no images to score")
        scores = detector.anomaly_score(feats.X)
        truth = anomaly_truth(feats.labels or [None] * len(feats), normal_labels)
        metrics = None
        if truth is not None:
            rows = truth >= 0
            if len(set(truth[rows].tolist())) == 2:
                kinds = [str(lab) for lab, r in zip(feats.labels, rows) if r]
                metrics = inspection_metrics(scores[rows], truth[rows] == 1, detector.threshold, kinds=kinds)
            else:
                seen = sorted({str(lab) for lab in feats.labels if lab is not None})
                typer.echo(f"note: no metrics: with the good labels {', '.join(normal_labels)}, the labelled images of --images "
                           f"(labels {', '.join(seen[:5])}) are all {'good' if not truth[rows].any() else 'anomalies'}; "
                           "metrics need both (--normal-label names the good labels)", err=True)  # fmt: skip
        atomic_write(out, scores_csv(feats.ids, scores, detector.threshold))
        say_what_was_left_out(feats, out)
        flagged = int((scores > detector.threshold).sum())
        if metrics_out is not None:
            write_json({"detector": str(detector_dir), "images": images, "method": detector.method, "model": detector.model,
                        "threshold": detector.threshold, "false_alarm": detector.false_alarm, "n_images": len(feats),
                        "n_flagged": flagged, "n_skipped": len(feats.skipped), "normal_labels": list(normal_labels),
                        "metrics": metrics}, metrics_out)  # fmt: skip
        if report is not None:
            inspection_report(detector, feats.ids, scores, thumbnails(source, feats.ids), metrics=metrics, truth=truth).save(report)
    typer.echo(f"{len(feats)} images scored, {flagged} flagged ({flagged / len(feats):.1%}) at threshold {detector.threshold:.6g}")
    if metrics is not None:
        typer.echo(f"AUROC {metrics['auroc']:.4f}  AUPR {metrics['aupr']:.4f}  APCER {metrics['apcer']:.4f}  "
                   f"BPCER {metrics['bpcer']:.4f}  ACER {metrics['acer']:.4f}  HTER {metrics['hter']:.4f}  "
                   f"({metrics['n_normal']} good, {metrics['n_anomalous']} anomalous)")  # fmt: skip
    written = [str(p) for p in (out, metrics_out, report) if p is not None]
    typer.echo(f"wrote {', '.join(written)}")
