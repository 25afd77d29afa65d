"""``cliplab adapt``: compare few-shot heads across shots and seeds; export the best with conformal sets."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

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
    ClassnamesOption,
    DecodeOption,
    EmbeddingOptions,
    ModelOption,
    NoCacheOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    WorkersOption,
    user_errors,
    warnings_as_lines,
)
from cliplab.data.few_shot import SELECTION_FRACTION, stratified_split
from cliplab.errors import InputError

DEFAULT_METHODS = "zeroshot,gda,tip,tip-f,support,linear,coop,cocoop,svd"


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside: the small ops of head training otherwise wait at OpenMP
    barriers when other processes hold the cores (measured: a 4,800-element exp takes 24 ms with
    2 threads on a busy 2-core machine, 4 us with 1). A process setting, so the CLI applies it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parse_ints(value: str, option: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"{option} takes comma-separated integers such as 1,2,4, got {value!r}") from exc
    if not numbers or min(numbers) < (1 if option == "--shots" else 0):
        raise InputError(f"{option} needs at least one {'positive ' if option == '--shots' else ''}integer, got {value!r}")
    return numbers


def parse_methods(value: str) -> list[str]:
    from cliplab.adapt.compare import check_methods

    methods = [m.strip() for m in value.split(",") if m.strip()]
    check_methods(methods)
    return methods


def check_fractions(test_fraction: float, selection_fraction: float) -> None:
    for flag, value in (("--test-fraction", test_fraction), ("--selection-fraction", selection_fraction)):
        if not 0.0 < value < 1.0:
            raise InputError(f"{flag} must be in (0, 1), got {value}")


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
    train: str = typer.Option(..., "--train", help="Labelled training pool: a class-per-subfolder folder, a manifest with labels, or shards. With --methods nola: unlabelled images (labels, if any, only score the stages)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.json and report.html (created)."),
    test: Optional[str] = typer.Option(None, "--test", help="Labelled test images. Omitted: a stratified part of --train is held out and no search ever sees it."),
    test_fraction: float = typer.Option(0.3, "--test-fraction", help="Share of each class held out as test when --test is omitted."),
    shots: str = typer.Option("1,2,4,8,16", "--shots", help="Shots per class to compare, e.g. 1,2,4,8,16."),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Seeds of the few-shot draws; results are mean ± std over them."),
    methods: str = typer.Option(DEFAULT_METHODS, "--methods", help="Methods to compare: zeroshot, gda, tip, tip-f, support (SuS-X / CapS-Adapter's TIP-X over the shots as the support set), linear, coop, cocoop, svd. One-class detectors are not classifiers: see cliplab inspect. 'nola' alone: label-free adaptation of --train's unlabelled images to --classnames (writes results.json and predictions.csv). 'ipclip' alone: IP-CLIP's non-transferable prompt, accurate on --train's domain and wrong on each --unauthorised one (needs a ViT model; --export saves the prompt)."),
    unauthorised: Optional[List[str]] = typer.Option(None, "--unauthorised", help="With --methods ipclip: labelled images of a domain the prompt must fail on (same classes as --train); repeat for several domains. A --test-fraction of each is held out to score it."),
    views: int = typer.Option(10, "--views", min=0, help="Augmented views (random crop + flip) per shot image for GDA, Tip-Adapter(-F) and support; 0 switches them off."),
    classnames: ClassnamesOption = None,
    descriptors: Optional[Path] = typer.Option(None, "--descriptors", help="With --methods nola: a JSON file {class: [description, ...]} encoded beside the templates (NoLA's description-based classifier)."),
    ssl_model: Optional[str] = typer.Option(None, "--ssl-model", help="With --methods nola: the self-supervised encoder whose image features the labelling network reads (any model spec; default: --model's own image tower)."),
    ssl_layers: Optional[str] = typer.Option(None, "--ssl-layers", help="With --methods nola: the labelling network reads these blocks' tokens of the SSL encoder (a ViT) instead of its embedding, e.g. -1 (negative: from the last; COMM's multi-level features)."),
    ssl_tokens: Optional[str] = typer.Option(None, "--ssl-tokens", help="With --ssl-layers: which tokens of each block: cls, mean and/or gridK (patch tokens averaged over a KxK grid), joined by '+'.", show_default="grid8: every patch token of shapes-vit's 8x8 grid"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs of the trained heads (default: each method's reference setting)."),
    templates: str = typer.Option("default", "--templates", help="Zero-shot prompt templates: default | openai_imagenet | tip_adapter, or a .txt/.json file."),
    export: Optional[Path] = typer.Option(None, "--export", help="Save the best head (by accuracy at the most shots on selection images that no search sees) with conformal sets to this file, for cliplab classify --head. svd tunes the model's towers rather than a head over its embeddings, so it is compared but never exported."),
    export_method: Optional[str] = typer.Option(None, "--export-method", help="Export this compared method (at the most shots) instead of the best one; any of --methods but svd."),
    selection_fraction: float = typer.Option(SELECTION_FRACTION, "--selection-fraction", help="With --export: share of each class of the training pool set aside, before any draw, to choose the method to export."),
    conformal_alpha: float = typer.Option(0.1, "--conformal-alpha", help="Miscoverage of the exported head's prediction sets (0.1: sets hold the true class 90% of the time)."),
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
    """Compare zero-shot and few-shot heads on your labelled images; print mean ± std accuracy per method and shot count, write results.json and report.html, and optionally export the best head.

    Images are embedded once (cached like cliplab embed). For every shot count and seed, K images per class are drawn for training and min(K, 4) others for validation; hyperparameter searches and early stopping use only that validation set, and accuracy is measured on the test images. With --export, the method is chosen on selection images set aside before any draw.
    """
    from rich.progress import Progress

    from cliplab.adapt.compare import IMAGE_METHODS, Task, check_classes, run_comparison, summarise
    from cliplab.adapt.export import describe_export, export_best, selection_rows
    from cliplab.data.sources import open_source
    from cliplab.features import embed
    from cliplab.files import atomic_folder, write_json
    from cliplab.zeroshot import ZeroShotClassifier

    console = Console()
    if "ipclip" in [m.strip() for m in methods.split(",")]:
        from cliplab.cli.ipclip import run_ip_clip

        with user_errors(), warnings_as_lines(), one_torch_thread():
            if methods.strip() != "ipclip":
                raise InputError("--methods ipclip runs alone (it trains on whole domains, not on shot draws); pass --methods ipclip")
            check_fractions(test_fraction, selection_fraction)
            options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
            run_ip_clip(train, unauthorised or [], test, test_fraction, out, epochs, parse_ints(seeds, "--seeds")[0], export, options)
        return
    if unauthorised:
        with user_errors():
            raise InputError("--unauthorised applies with --methods ipclip only")
    if "nola" in [m.strip() for m in methods.split(",")]:
        from cliplab.cli.label_free import SslFeatures, run_label_free

        with user_errors(), warnings_as_lines(), one_torch_thread():
            if methods.strip() != "nola":
                raise InputError("--methods nola runs alone (it uses no labels, the other methods need them); pass --methods nola")
            options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
            run_label_free(train, out, classnames, templates, descriptors, SslFeatures(ssl_model, ssl_layers, ssl_tokens), epochs, options)
        return
    with user_errors(), warnings_as_lines():
        shot_list, seed_list, method_list = parse_ints(shots, "--shots"), parse_ints(seeds, "--seeds"), parse_methods(methods)
        check_fractions(test_fraction, selection_fraction)
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
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
        train_source = open_source(train)
        check_classes([item.label for item in train_source.items], "--train")
        test_source = open_source(test) if test is not None else None
        if test_source is not None:
            check_classes([item.label for item in test_source.items], "--test", min_classes=1)
        clip, kw = options.prepare()
        pool = embed(clip, train_source, **kw).labelled()  # images kept unlabelled were named by the source
        y_all = np.array(pool.labels, dtype=str)
        pool_load = image_loader(train_source, pool.ids)
        if test_source is None:
            pool_rows, test_rows = stratified_split(y_all, test_fraction, 0, "--test-fraction")
            X_pool, y_pool, X_test, y_test = pool.X[pool_rows], y_all[pool_rows], pool.X[test_rows], y_all[test_rows]
            load_pool = lambda rows: pool_load(pool_rows[np.asarray(rows, dtype=np.int64)])  # noqa: E731
            load_test = lambda: pool_load(test_rows)  # noqa: E731
        else:
            test_feats = embed(clip, test_source, **kw).labelled()
            X_pool, y_pool, load_pool = pool.X, y_all, pool_load
            X_test, y_test = test_feats.X, np.array(test_feats.labels, dtype=str)
            test_load = image_loader(test_source, test_feats.ids)
            load_test = lambda: test_load(range(len(test_feats)))  # noqa: E731
        classes = np.unique(y_pool)
        unknown = sorted(set(y_test.tolist()) - set(classes.tolist()))
        if unknown:
            raise InputError(f"--test has classes the training pool lacks: {', '.join(unknown[:5])}")
        texts = [c.replace("_", " ") for c in classes.tolist()]  # folder names such as top_left
        zero_shot = ZeroShotClassifier(clip, texts, templates).fit()
        selection = selection_rows(y_pool, selection_fraction) if export is not None else np.zeros(0, np.int64)
        task = Task(clip, X_pool, y_pool, X_test, y_test, classes, texts, zero_shot.text_weights_,
                    pool_images=load_pool, test_images=load_test, n_views=views, selection=selection)  # fmt: skip
        total = len(shot_list) * len(seed_list) * len(method_list)
        with Progress(console=console, disable=not progress, transient=True) as bar, one_torch_thread():
            job = bar.add_task("fitting heads", total=total)
            records = run_comparison(task, method_list, shot_list, seed_list, epochs,
                                     on_result=lambda r: bar.update(job, advance=1, description=f"{r['method']} {r['shots']}-shot seed {r['seed']}"))  # fmt: skip
        summary = summarise(records)
        export_info = None
        if export is not None:
            with one_torch_thread():
                export_info = export_best(task, records, export, alpha=conformal_alpha, epochs=epochs, method=export_method)
        with atomic_folder(out) as tmp:
            write_json({"model": clip.name, "precision": clip.precision, "runs": records, "export": export_info}, tmp / "results.json")
            write_report(tmp / "report.html", clip.name, summary, shot_list, method_list, records, export_info, len(X_pool), len(X_test))
    console.print(results_table(summary, shot_list, method_list))
    if export_info:
        typer.echo(describe_export(export_info))
    typer.echo(f"wrote {out / 'results.json'} and {out / 'report.html'}")


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
