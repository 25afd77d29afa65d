"""``cliplab eval``: CLIP_benchmark-style zero-shot classification and retrieval, and the tasks beyond
accuracy (``cli/eval_tasks.py``), JSON + HTML report."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from cliplab.cli import app
from cliplab.cli.common import (
    BATCH_SIZE_OPTION,
    CACHE_DIR_OPTION,
    CAPTION_COL_OPTION,
    DECODE_OPTION,
    IMAGE_COL_OPTION,
    LABEL_COL_OPTION,
    MODEL_OPTION,
    NO_CACHE_OPTION,
    ON_CONFLICT_OPTION,
    PRECISION_OPTION,
    PRETRAINED_OPTION,
    PROGRESS_OPTION,
    WORKERS_OPTION,
    Decode,
    OnConflict,
    Precision,
    cache_folder,
    deprecated_alias,
    load_model_for,
    open_images,
    read_names,
    say_what_was_left_out,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError
from cliplab.files import write_json


class Task(str, Enum):
    auto = "auto"
    zeroshot_classification = "zeroshot_classification"
    zeroshot_retrieval = "zeroshot_retrieval"
    robustness = "robustness"
    calibration = "calibration"
    ood = "ood"
    fairness = "fairness"
    diagnostics = "diagnostics"
    generation = "generation"
    skills = "skills"
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
    except ValueError as exc:
        bad = next(x for x in raw if not x.lstrip("-").isdigit())
        raise InputError(f"--recall-k takes integers (e.g. 1 5 10), got {bad!r}") from exc
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


def print_metrics(result) -> None:
    table = Table(title=f"{result.task} — {result.dataset}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


def open_eval_source(images: str, task: Task, attribute: Attribute | None, manifest_options: dict):
    """The dataset to evaluate. Synthetic scenes are labelled by ``--attribute`` (default shape)
    unless the task is retrieval; ``--attribute`` on anything else is an error."""
    from cliplab.evaluate.runner import is_synthetic, open_dataset

    if attribute is not None and task == Task.zeroshot_retrieval:
        raise InputError("--attribute applies to classification; retrieval uses the scenes' captions")
    if is_synthetic(images) and task != Task.zeroshot_retrieval:
        return open_dataset(images, attribute=(attribute or Attribute.shape).value)
    if attribute is not None:
        raise InputError(f"--attribute applies to synthetic scenes (--images synthetic:N) only, not to {images}")
    return open_images(images, **manifest_options)


@app.command("eval", context_settings={"allow_extra_args": True})
def eval_command(
    ctx: typer.Context,
    images: Optional[str] = typer.Option(None, "--images", "-i", help="Dataset: an image folder (one subfolder per class), a .csv/.tsv/.jsonl manifest, .tar shards, or synthetic:<n>[:seed]. Not used by --task skills."),
    out: Path = typer.Option(..., "--out", "-o", help="Results JSON to write (CLIP_benchmark layout: dataset, model, pretrained, task, metrics, and what was run)."),
    model: str = MODEL_OPTION,
    pretrained: Optional[str] = PRETRAINED_OPTION,
    task: Task = typer.Option(Task.auto, "--task", "-t", help="What to measure; auto: classification when the dataset has labels, else retrieval over its captions. Beyond accuracy: robustness, calibration, ood, fairness, diagnostics, generation, skills."),
    templates: Optional[str] = typer.Option(None, "--templates", help="Prompt templates: default, openai_imagenet, tip_adapter, or a .txt/.json file. Default: default (synthetic scenes: the attribute's own prompt)."),
    classnames: Optional[str] = typer.Option(None, "--classnames", help="Class names 'a,b,c' or a file with one per line: the label vocabulary, or new names for the dataset's classes in order."),
    attribute: Optional[Attribute] = typer.Option(None, "--attribute", help="Synthetic scenes only: the attribute of single-object scenes to classify (default shape)."),
    recall_k: Optional[list[str]] = typer.Option(None, "--recall-k", "-k", help="Retrieval: k values, as '--recall-k 1 5 10' or '1,5,10' (default 1 5 10)."),
    precision: Precision = PRECISION_OPTION,
    batch_size: Optional[int] = BATCH_SIZE_OPTION,
    decode: Decode = DECODE_OPTION,
    cache_dir: Optional[Path] = CACHE_DIR_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    image_col: Optional[str] = IMAGE_COL_OPTION,
    caption_col: Optional[str] = CAPTION_COL_OPTION,
    label_col: Optional[str] = LABEL_COL_OPTION,
    on_conflict: OnConflict = ON_CONFLICT_OPTION,
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a self-contained HTML report (what was run, metrics, confusion matrix, examples)."),
    progress: bool = PROGRESS_OPTION,
    corruptions: Optional[str] = typer.Option(None, "--corruptions", help="Robustness: ImageNet-C corruptions, e.g. gaussian_noise,motion_blur (default: 11 of them)."),
    severities: Optional[str] = typer.Option(None, "--severities", help="Robustness: severities among 1-5, e.g. 1,3,5 (default: all five)."),
    ood_images: Optional[str] = typer.Option(None, "--ood-images", "--ood-dataset", help="OOD: images from elsewhere, to tell apart from --images."),
    group_column: Optional[list[str]] = typer.Option(None, "--group-column", help="Fairness: a metadata column naming each image's group (repeat for several; synthetic scenes: background, color, size, position)."),
    captions: Optional[Path] = typer.Option(None, "--captions", help="Generation: a file with one caption per image, in order (default: each image's first caption)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Generation: reference images for CMMD."),
    scenes: Optional[int] = typer.Option(None, "--scenes", min=2, help="Skills: synthetic scenes per skill (default 500)."),
    bins: Optional[int] = typer.Option(None, "--bins", min=1, help="Calibration: confidence bins (default 15)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the task's randomness (splits, bootstrap, corruptions, scenes)."),
    method: Optional[str] = typer.Option(None, "--method", help="Segmentation: auto (default: maskclip for a ResNet, naclip for a ViT), vanilla, maskclip, sclip, clearclip or naclip (images: synthetic:<n>[:seed] or a folder with images/, masks/, classes.txt)."),
    pamr: bool = typer.Option(False, "--pamr", help="Segmentation: refine label edges with pixel-adaptive mask refinement."),
    regions: bool = typer.Option(False, "--regions", help="Segmentation: relabel each foreground region with the class of a crop around it (OVSeg-style)."),
    refiner: Optional[Path] = typer.Option(None, "--refiner", help="Segmentation: a learned refinement head file (cliplab.dense.refine)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", hidden=True, help="Deprecated name of --images."),
) -> None:
    """Evaluate a model zero-shot on a dataset; write CLIP_benchmark-style JSON (and an HTML report).

    Beyond accuracy, --task robustness | calibration | ood | fairness | diagnostics | generation |
    skills measures corruption robustness, calibration, OOD detection, subgroup gaps, embedding
    geometry, CLIPScore/CMMD/diversity, and compositional skills on synthetic scenes.
    """
    from cliplab.cli import eval_tasks
    from cliplab.evaluate.tasks import EmbedOptions

    with user_errors(), warnings_as_lines():
        images = deprecated_alias(images, dataset, "--dataset", "--images")
        names = read_names(classnames, "--classnames") if classnames else None
        cache = cache_folder(cache_dir, no_cache)
        dense = {"--method": method, "--pamr": pamr or None, "--regions": regions or None, "--refiner": refiner}
        if task != Task.segmentation and any(v is not None for v in dense.values()):
            raise InputError(f"{', '.join(k for k, v in dense.items() if v is not None)} applies to --task segmentation only")
        if task == Task.segmentation:
            if images is None:
                raise InputError("--task segmentation needs --images: synthetic:<n>[:seed] or a folder with images/, masks/, classes.txt")
            from cliplab.dense.datasets import open_mask_dataset
            from cliplab.dense.refine import CorrelationRefiner

            dataset = open_mask_dataset(images)  # the inputs are checked before the model loads
            head = CorrelationRefiner.load(refiner) if refiner is not None else None
            result = _segmentation(load_model_for(model, pretrained, precision, announce=progress), pretrained, dataset, out, report,
                                   method=method or "auto", templates=templates or "default", batch_size=batch_size, progress=progress,
                                   refine="pamr" if pamr else None, regions=regions, refiner=head)  # fmt: skip
            print_metrics(result)
            typer.echo(f"wrote {out}" + (f" and {report}" if report is not None else ""))
            return
        if task.value in eval_tasks.TASKS:
            manifest = {"--image-col": image_col, "--caption-col": caption_col, "--label-col": label_col}
            given = [flag for flag, v in manifest.items() if v is not None] + (["--on-conflict"] if on_conflict != OnConflict.error else [])
            if given:
                raise InputError(f"{given[0]} applies to zero-shot classification and retrieval, not to --task {task.value}")
            if recall_k:
                raise InputError(f"--recall-k does not apply to --task {task.value}")
            if ctx.args:
                raise InputError(f"unexpected argument {ctx.args[0]!r}")
            opts = eval_tasks.TaskOptions(
                images, names, templates, attribute.value if attribute else None,
                corruptions, severities, bins, seed, ood_images, list(group_column or []), captions, reference, scenes,
            )  # fmt: skip
            clip = load_model_for(model, pretrained, precision, announce=progress)
            result = eval_tasks.run_task(task.value, clip, opts, EmbedOptions(batch_size, cache, workers, progress, decode.value), pretrained, progress)
            eval_tasks.write_outputs(result, out, report)
        else:
            if images is None:
                raise InputError("--images is required: a folder, a manifest, .tar shards or synthetic:N")
            task_only = {"--corruptions": corruptions, "--severities": severities, "--ood-images": ood_images,
                         "--group-column": group_column, "--captions": captions, "--reference": reference,
                         "--scenes": scenes, "--bins": bins, "--seed": seed}  # fmt: skip
            stray = next((flag for flag, v in task_only.items() if v not in (None, [])), None)
            if stray:
                raise InputError(f"{stray} applies to --task {eval_tasks.tasks_taking(stray)}, not to zero-shot classification or retrieval")
            result = _zeroshot(clip_spec=(model, pretrained, precision, progress), images=images, task=task, names=names,
                               templates=templates, attribute=attribute, recall_k=recall_k, extra=list(ctx.args),
                               manifest=dict(image_col=image_col, caption_col=caption_col, label_col=label_col, on_conflict=on_conflict),
                               embed=dict(batch_size=batch_size, cache_dir=cache, num_workers=workers, progress=progress,
                                          decode=decode.value))  # fmt: skip
            write_json(result.to_json(), out)
            say_what_was_left_out(result.details.features, out)
            if report is not None:
                from cliplab.evaluate.eval_report import eval_report

                eval_report(result).save(report)
    if task.value in eval_tasks.TASKS:
        eval_tasks.print_result(result)
    else:
        print_metrics(result)
    typer.echo(f"wrote {out}" + (f" and {report}" if report is not None else ""))


def _segmentation(clip, pretrained, dataset, out: Path, report: Path | None, **options):
    """``--task segmentation``: mIoU and friends of a dense method on images with masks; JSON and an optional report."""
    from cliplab.dense.evaluate import run_segmentation, segmentation_report

    result = run_segmentation(clip, dataset, pretrained=pretrained, **options)
    write_json(result.to_json(), out)
    if report is not None:
        segmentation_report(result, dataset).save(report)
    return result


def _zeroshot(clip_spec, images, task, names, templates, attribute, recall_k, extra, manifest, embed):
    """Zero-shot classification or retrieval (``--task auto`` picks by the data)."""
    from cliplab.evaluate.runner import (
        run_zeroshot_classification,
        run_zeroshot_retrieval,
    )

    ks = parse_recall_k(recall_k, extra)
    source = open_eval_source(images, task, attribute, manifest)
    which = pick_task(task, source, names)
    if which == Task.zeroshot_retrieval.value and (templates or names):
        raise InputError(f"{'--templates' if templates else '--classnames'} applies to classification, not to retrieval")
    if which == Task.zeroshot_classification.value and recall_k:
        raise InputError("--recall-k applies to retrieval, not to classification")
    model, pretrained, precision, announce = clip_spec
    clip = load_model_for(model, pretrained, precision, announce=announce)
    common = dict(dataset=images, pretrained=pretrained, **embed)
    if which == Task.zeroshot_classification.value:
        return run_zeroshot_classification(clip, source, templates=templates, classnames=names, **common)
    return run_zeroshot_retrieval(clip, source, ks=ks, **common)
