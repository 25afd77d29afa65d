"""``cliplab eval``: CLIP_benchmark-style zero-shot classification and retrieval, JSON + HTML report."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from cliplab.errors import InputError
from cliplab.cli import app
from cliplab.cli.common import (
    BATCH_SIZE_OPTION,
    CACHE_DIR_OPTION,
    MODEL_OPTION,
    PRETRAINED_OPTION,
    PROGRESS_OPTION,
    WORKERS_OPTION,
    read_names,
    user_errors,
    warnings_as_lines,
)
from cliplab.files import write_json


class Task(str, Enum):
    auto = "auto"
    zeroshot_classification = "zeroshot_classification"
    zeroshot_retrieval = "zeroshot_retrieval"
    segmentation = "segmentation"


class Attribute(str, Enum):
    shape = "shape"
    color = "color"
    size = "size"
    position = "position"
    background = "background"


def parse_recall_k(values: list[str] | None, extra: list[str]) -> tuple[int, ...]:
    """``--recall-k 1 5 10``, ``--recall-k 1,5,10`` or a repeated option -> (1, 5, 10); default (1, 5, 10)."""
    if extra and not values:
        raise InputError(f"unexpected argument {extra[0]!r}")
    raw = [part for v in [*(values or []), *extra] for part in v.replace(",", " ").split()]
    if not raw:
        return (1, 5, 10)
    try:
        ks = [int(x) for x in raw]
    except ValueError:
        bad = next(x for x in raw if not x.lstrip("-").isdigit())
        raise InputError(f"--recall-k takes integers (e.g. 1 5 10), got {bad!r}") from None
    if any(k < 1 for k in ks):
        raise InputError(f"--recall-k values must be >= 1, got {min(ks)}")
    return tuple(sorted(set(ks)))


def pick_task(task: Task, source, classnames) -> str:
    """``auto``: classification when the dataset has classes (or class names are given), else retrieval."""
    if task != Task.auto:
        return task.value
    if source.classes or classnames:
        return Task.zeroshot_classification.value
    if any(it.captions for it in source.items):
        return Task.zeroshot_retrieval.value
    raise InputError(f"dataset {source.name!r} has neither labels nor captions; nothing to evaluate")


def print_metrics(result: dict) -> None:
    table = Table(title=f"{result['task']} — {result['dataset']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result["metrics"].items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


@app.command("eval", context_settings={"allow_extra_args": True})
def eval_command(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset: an image folder (one subfolder per class), a .csv/.jsonl manifest, .tar shards, or synthetic:<n>[:seed]."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON to write (CLIP_benchmark layout: dataset, model, pretrained, task, metrics)."),
    model: str = MODEL_OPTION,
    pretrained: Optional[str] = PRETRAINED_OPTION,
    task: Task = typer.Option(Task.auto, "--task", "-t", help="What to measure; auto: classification when the dataset has labels, else retrieval over its captions."),
    templates: Optional[str] = typer.Option(None, "--templates", help="Prompt templates: default | openai_imagenet | tip_adapter, or a .txt/.json file. Default: 'default' (synthetic scenes: the attribute's own prompt)."),
    classnames: Optional[str] = typer.Option(None, "--classnames", help="Class names 'a,b,c' or a file with one per line: the label vocabulary, or new names for the dataset's classes in order."),
    attribute: Attribute = typer.Option(Attribute.shape, "--attribute", help="Synthetic datasets only: the label of single-object scenes for classification."),
    recall_k: Optional[list[str]] = typer.Option(None, "--recall-k", "-k", help="Retrieval: k values, as '--recall-k 1 5 10' or '1,5,10' (default 1 5 10)."),
    batch_size: int = BATCH_SIZE_OPTION,
    cache_dir: Optional[Path] = CACHE_DIR_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a self-contained HTML report (metrics, confusion matrix, examples)."),
    progress: bool = PROGRESS_OPTION,
    method: str = typer.Option("clearclip", "--method", help="Segmentation only: vanilla, maskclip, sclip, clearclip or naclip (dataset: synthetic:<n>[:seed] or a folder with images/, masks/, classes.txt)."),
) -> None:
    """Evaluate a model zero-shot on a dataset; write CLIP_benchmark-style JSON (and an HTML report)."""
    from cliplab.evaluate.runner import open_dataset, public_result, run_zeroshot_classification, run_zeroshot_retrieval
    from cliplab.models import load_model

    if task == Task.segmentation:
        from cliplab.dense.evaluate import segmentation_eval_command

        with user_errors(), warnings_as_lines():
            segmentation_eval_command(model, pretrained, dataset, out, report, method, templates, batch_size, progress)
        return
    with user_errors(), warnings_as_lines():
        ks = parse_recall_k(recall_k, list(ctx.args))
        names = read_names(classnames, "--classnames") if classnames else None
        source = open_dataset(dataset, attribute=attribute.value if task != Task.zeroshot_retrieval else None)
        which = pick_task(task, source, names)
        clip = load_model(model, pretrained=pretrained)
        common = dict(batch_size=batch_size, cache_dir=cache_dir, dataset=dataset, pretrained=pretrained,
                      num_workers=workers, progress=progress)  # fmt: skip
        if which == Task.zeroshot_classification.value:
            result = run_zeroshot_classification(clip, source, templates=templates, classnames=names, **common)
        else:
            result = run_zeroshot_retrieval(clip, source, ks=ks, **common)
        write_json(public_result(result), out)
        if report is not None:
            from cliplab.evaluate.eval_report import eval_report

            eval_report(result).save(report)
    print_metrics(result)
    typer.echo(f"wrote {out}" + (f" and {report}" if report is not None else ""))
