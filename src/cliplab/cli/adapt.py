"""``cliplab adapt``: compare few-shot heads across shots and seeds; export the best with conformal sets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from cliplab.cli import app
from cliplab.cli.common import (
    BATCH_SIZE_OPTION,
    CACHE_DIR_OPTION,
    MODEL_OPTION,
    PRETRAINED_OPTION,
    PROGRESS_OPTION,
    WORKERS_OPTION,
    user_errors,
    warnings_as_lines,
)
from cliplab.data.few_shot import stratified_split
from cliplab.errors import InputError

DEFAULT_METHODS = "zeroshot,gda,tip,tip-f,linear,coop,cocoop,svd"


def parse_ints(value: str, option: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"{option} takes comma-separated integers such as 1,2,4, got {value!r}") from exc
    if not numbers or min(numbers) < (1 if option == "--shots" else 0):
        raise InputError(f"{option} needs at least one {'positive ' if option == '--shots' else ''}integer, got {value!r}")
    return numbers


def labelled(feats, what: str) -> np.ndarray:
    if feats.labels is None or any(lab is None for lab in feats.labels):
        raise InputError(f"{what} has unlabelled images; use a class-per-subfolder folder or a manifest with labels")
    return np.array(feats.labels, dtype=str)


def image_loader(source, ids):
    """A function rows -> decoded images for the given feature ids of ``source``."""
    from cliplab.data.images import decode_image

    items = {item.id: item for item in source.items}

    def load(rows):
        return [decode_image(items[ids[int(r)]].read_bytes(), ids[int(r)]) for r in rows]

    return load


def results_table(summary: dict, shots: list[int], methods: list[str]) -> Table:
    table = Table(title="test accuracy (%), mean ± std over seeds")
    table.add_column("method")
    for k in shots:
        table.add_column(f"{k} shot" + ("s" if k > 1 else ""), justify="right")
    for m in methods:
        table.add_row(m, *[f"{100 * summary[m][k][0]:.1f} ± {100 * summary[m][k][1]:.1f}" for k in shots])
    return table


def accuracy_plot(summary: dict, shots: list[int]) -> bytes:
    from matplotlib.figure import Figure

    from cliplab.evaluate.plots import figure_png

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for method, per in summary.items():
        means = [100 * per[k][0] for k in shots]
        stds = [100 * per[k][1] for k in shots]
        ax.errorbar(shots, means, yerr=stds, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


@app.command("adapt")
def adapt_command(
    train: str = typer.Option(..., "--train", help="Labelled training pool: a class-per-subfolder folder, a manifest with labels, or shards."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.json and report.html (created)."),
    test: Optional[str] = typer.Option(None, "--test", help="Labelled test images. Omitted: a stratified part of --train is held out and no search ever sees it."),
    test_fraction: float = typer.Option(0.3, "--test-fraction", help="Share of each class held out as test when --test is omitted."),
    shots: str = typer.Option("1,2,4,8,16", "--shots", help="Shots per class to compare, e.g. 1,2,4,8,16."),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Seeds of the few-shot draws; results are mean ± std over them."),
    methods: str = typer.Option(DEFAULT_METHODS, "--methods", help="Methods to compare: zeroshot, gda, tip, tip-f, linear, coop, cocoop, svd."),
    views: int = typer.Option(10, "--views", min=0, help="Augmented views (random crop + flip) per shot image for GDA and Tip-Adapter(-F); 0 switches them off."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs of the trained heads (default: each method's reference setting)."),
    templates: str = typer.Option("default", "--templates", help="Zero-shot prompt templates: default | openai_imagenet | tip_adapter, or a .txt/.json file."),
    export: Optional[Path] = typer.Option(None, "--export", help="Save the best head (by validation accuracy at the most shots) with conformal sets to this file, for cliplab classify --head. svd tunes the model's towers rather than a head over its embeddings, so it is compared but never exported."),
    export_method: Optional[str] = typer.Option(None, "--export-method", help="Export this compared method (at the most shots) instead of the best one; any of --methods but svd."),
    conformal_alpha: float = typer.Option(0.1, "--conformal-alpha", help="Miscoverage of the exported head's prediction sets (0.1: sets hold the true class 90% of the time)."),
    model: str = MODEL_OPTION,
    pretrained: Optional[str] = PRETRAINED_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    cache_dir: Optional[Path] = CACHE_DIR_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Compare zero-shot and few-shot heads on your labelled images; print mean ± std accuracy per method and shot count, write results.json and report.html, and optionally export the best head.

    Images are embedded once (cached with --cache-dir). For every shot count and seed, K images per class are drawn for training and min(K, 4) others for validation; hyperparameter searches and early stopping use only that validation set, and accuracy is measured on the test images.
    """
    from rich.progress import Progress

    from cliplab.adapt.compare import IMAGE_METHODS, Task, run_comparison, summarise
    from cliplab.data.sources import open_source
    from cliplab.features import embed
    from cliplab.files import atomic_folder, write_json
    from cliplab.models import load_model
    from cliplab.zeroshot import ZeroShotClassifier

    console = Console()
    with user_errors(), warnings_as_lines():
        shot_list, seed_list = parse_ints(shots, "--shots"), parse_ints(seeds, "--seeds")
        method_list = [m.strip() for m in methods.split(",") if m.strip()]
        if not 0.0 < conformal_alpha < 1.0:
            raise InputError(f"--conformal-alpha must be in (0, 1), got {conformal_alpha}")
        if export_method is not None:
            if export is None:
                raise InputError("--export-method needs --export FILE to write the head to")
            exportable = [m for m in method_list if m not in IMAGE_METHODS]
            if export_method not in exportable:
                raise InputError(f"--export-method {export_method!r} is not among the exportable methods compared: {', '.join(exportable)}")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty; choose a new output folder")
        clip = load_model(model, pretrained=pretrained)
        kw = dict(cache_dir=cache_dir, batch_size=batch_size, num_workers=workers, progress=progress)
        train_source = open_source(train)
        pool = embed(clip, train_source, **kw)
        y_all = labelled(pool, "--train")
        pool_load = image_loader(train_source, pool.ids)
        if test is None:
            pool_rows, test_rows = stratified_split(y_all, test_fraction, 0, "--test-fraction")
            X_pool, y_pool, X_test, y_test = pool.X[pool_rows], y_all[pool_rows], pool.X[test_rows], y_all[test_rows]
            load_pool = lambda rows: pool_load(pool_rows[np.asarray(rows, dtype=np.int64)])  # noqa: E731
            load_test = lambda: pool_load(test_rows)  # noqa: E731
        else:
            test_source = open_source(test)
            test_feats = embed(clip, test_source, **kw)
            X_pool, y_pool, load_pool = pool.X, y_all, pool_load
            X_test, y_test = test_feats.X, labelled(test_feats, "--test")
            test_load = image_loader(test_source, test_feats.ids)
            load_test = lambda: test_load(range(len(test_feats)))  # noqa: E731
        classes = np.unique(y_pool)
        unknown = sorted(set(y_test.tolist()) - set(classes.tolist()))
        if unknown:
            raise InputError(f"--test has classes the training pool lacks: {', '.join(unknown[:5])}")
        texts = [c.replace("_", " ") for c in classes.tolist()]  # folder names such as top_left
        zero_shot = ZeroShotClassifier(clip, texts, templates).fit()
        task = Task(clip, X_pool, y_pool, X_test, y_test, classes, texts, zero_shot.text_weights_,
                    pool_images=load_pool, test_images=load_test, n_views=views)  # fmt: skip
        total = len(shot_list) * len(seed_list) * len(method_list)
        with Progress(console=console, disable=not progress, transient=True) as bar:
            job = bar.add_task("fitting heads", total=total)
            records = run_comparison(task, method_list, shot_list, seed_list, epochs,
                                     on_result=lambda r: bar.update(job, advance=1, description=f"{r['method']} {r['shots']}-shot seed {r['seed']}"))  # fmt: skip
        summary = summarise(records)
        export_info = None
        if export is not None:
            export_info = export_best(task, records, method_list, shot_list, seed_list, epochs, conformal_alpha, export, IMAGE_METHODS, export_method)
        with atomic_folder(out) as tmp:
            write_json(records, tmp / "results.json")
            write_report(tmp / "report.html", clip.name, summary, shot_list, method_list, records, export_info, len(X_pool), len(X_test))
    console.print(results_table(summary, shot_list, method_list))
    if export_info:
        console.print(
            f"exported {export_info['method']} ({export_info['shots']} shots) to {export}: validation accuracy "
            f"{export_info['val_accuracy']:.3f}; on test, sets at alpha={conformal_alpha} cover {export_info['coverage']:.3f} "
            f"with {export_info['mean_set_size']:.2f} classes on average"
        )
    typer.echo(f"wrote {out / 'results.json'} and {out / 'report.html'}")


def export_best(task, records, methods, shots, seeds, epochs, alpha, path, image_methods, chosen=None) -> dict:
    """Fit the ``chosen`` method, else the best exportable one, at the most shots (first seed); on pool images used for neither
    training nor validation (the validation set when none are left) fit a temperature on one half and
    the conformal quantile on the other; save."""
    from cliplab.adapt import (
        ConformalClassifier,
        TemperatureScaling,
        mean_set_size,
        set_coverage,
    )
    from cliplab.adapt._base import label_index
    from cliplab.adapt.compare import best_method, draw_split, fit_head

    method = chosen or best_method(records, [m for m in methods if m not in image_methods])
    k, seed = max(shots), seeds[0]
    train, val = draw_split(task.y_pool, k, seed)
    head = fit_head(method, task, train, val, seed, epochs)
    rest = np.setdiff1d(np.arange(len(task.y_pool)), np.concatenate([train, val]))
    cal = rest if len(rest) else val
    # temperature on one half, conformal quantile on the other: LAC sets need calibrated probabilities
    # (a strongly regularised probe gives near-uniform ones and every set would hold every class)
    halves = np.array_split(np.random.default_rng(seed).permutation(cal), 2) if len(cal) >= 2 * len(task.classes) else (cal, cal)
    scaled = TemperatureScaling(head).fit(task.X_pool[halves[0]], task.y_pool[halves[0]])
    conformal = ConformalClassifier(scaled, alpha=alpha, method="lac").fit(task.X_pool[halves[1]], task.y_pool[halves[1]])
    sets = conformal.predict_set(task.X_test)
    conformal.save(path)
    val_acc = float(np.mean([r["val_accuracy"] for r in records if r["method"] == method and r["shots"] == k]))
    return {
        "method": method, "shots": k, "seed": seed, "val_accuracy": val_acc, "calibration_images": int(len(cal)),
        "temperature": scaled.temperature_,
        "alpha": alpha, "coverage": set_coverage(sets, label_index(task.y_test, conformal.classes_, len(task.y_test))),
        "mean_set_size": mean_set_size(sets), "file": str(path),
    }  # fmt: skip


def write_report(path, model_name, summary, shots, methods, records, export_info, n_pool, n_test) -> None:
    from cliplab.evaluate.report import Report

    report = Report("Few-shot adaptation", f"model {model_name}; training pool {n_pool} images, test {n_test} images")
    report.add_figure("Accuracy vs shots", accuracy_plot(summary, shots), caption="mean ± std over seeds; test images never used for any choice")
    rows = [{"method": m, **{f"{k} shots": f"{100 * summary[m][k][0]:.1f} ± {100 * summary[m][k][1]:.1f}" for k in shots}} for m in methods]
    report.add_table("Test accuracy (%)", rows)
    if export_info:
        report.add_table("Exported head and its prediction sets", export_info,
                         caption="coverage and mean set size measured on the test images; calibration used training-pool images only")  # fmt: skip
    report.add_table("Every run", [{k: v for k, v in r.items()} for r in records])
    report.save(path)
