"""The ``cliplab eval`` tasks beyond zero-shot accuracy: option checks, the runner call, the table.

``cli/evaluate.py`` parses the options and hands them here as one ``TaskOptions``; everything
task-specific lives in ``cliplab.evaluate.tasks``.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.table import Table

from cliplab.errors import InputError
from cliplab.files import write_json

TASKS = ("robustness", "calibration", "ood", "fairness", "diagnostics", "generation", "skills")
# task -> the task-specific options it accepts (others given with it are an error)
ACCEPTS: dict[str, set[str]] = {
    "robustness": {"corruptions", "severities", "seed"},
    "calibration": {"bins", "seed"},
    "ood": {"ood_images"},
    "fairness": {"group_columns", "seed"},
    "diagnostics": {"seed"},
    "generation": {"captions", "reference", "seed"},
    "skills": {"scenes", "seed"},
}
FLAGS = {
    "corruptions": "--corruptions", "severities": "--severities", "bins": "--bins", "seed": "--seed",
    "ood_images": "--ood-images", "group_columns": "--group-column", "captions": "--captions",
    "reference": "--reference", "scenes": "--scenes",
}  # fmt: skip
NEEDS_LABELS = {"robustness", "calibration", "ood", "fairness"}


def tasks_taking(flag: str) -> str:
    """The tasks that accept ``flag``, for messages: ``--bins`` -> ``calibration``."""
    return ", ".join(task for task, names in ACCEPTS.items() if any(FLAGS[n] == flag for n in names))


@dataclass
class TaskOptions:
    """Everything ``cliplab eval`` passes to a task; None means "not given"."""

    images: str | None
    classnames: list[str] | None = None
    templates: str | None = None
    attribute: str | None = None  # synthetic scenes: default shape
    corruptions: str | None = None
    severities: str | None = None
    bins: int | None = None
    seed: int | None = None
    ood_images: str | None = None
    group_columns: list[str] = field(default_factory=list)
    captions: Path | None = None
    reference: str | None = None
    scenes: int | None = None


def check_options(task: str, opts: TaskOptions) -> None:
    """Refuse options the task does not use, and missing ones it needs."""
    given = {name for name in FLAGS if getattr(opts, name) not in (None, [])}
    stray = sorted(given - ACCEPTS[task])
    if stray:
        raise InputError(f"{FLAGS[stray[0]]} does not apply to --task {task}")
    if task == "skills":
        if opts.images is not None:
            raise InputError("--task skills generates its own synthetic scenes; drop --images")
    elif opts.images is None:
        raise InputError(f"--task {task} needs --images")
    if task not in NEEDS_LABELS and (opts.classnames or opts.templates):
        raise InputError(f"--classnames and --templates do not apply to --task {task}")
    if task == "ood" and opts.ood_images is None:
        raise InputError("--task ood needs --ood-images (images from elsewhere)")
    if task == "fairness" and not opts.group_columns:
        raise InputError("--task fairness needs --group-column (a metadata column naming each image's group)")


def _int_list(value: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in value.replace(",", " ").split()]
    except ValueError as exc:
        raise InputError(f"{flag} takes integers like 1,3,5, got {value!r}") from exc


@contextmanager
def _steps(enabled: bool) -> Iterator[Any]:
    """An ``on_step(text)`` callback that shows the current step as a spinner on stderr."""
    if not enabled:
        yield None
        return
    with Console(stderr=True).status("starting") as status:
        yield lambda text: status.update(text)


def run_task(task: str, model, opts: TaskOptions, embed_opts, pretrained: str | None, progress: bool):
    """Check the options and run ``task``; returns its ``TaskResult``."""
    check_options(task, opts)
    module = importlib.import_module(f"cliplab.evaluate.tasks.{task}")
    seed = 0 if opts.seed is None else opts.seed
    common = dict(pretrained=pretrained)
    labelled = dict(classnames=opts.classnames, templates=opts.templates, opts=embed_opts, attribute=opts.attribute, **common)
    with _steps(progress) as on_step:
        if task == "robustness":
            kw = {} if opts.corruptions is None else {"corruptions": [c.strip() for c in opts.corruptions.split(",") if c.strip()]}
            if opts.severities is not None:
                kw["severities"] = _int_list(opts.severities, "--severities")
            return module.run_robustness(model, opts.images, seed=seed, on_step=on_step, **kw, **labelled)
        if task == "calibration":
            return module.run_calibration(model, opts.images, n_bins=opts.bins or 15, seed=seed, **labelled)
        if task == "ood":
            return module.run_ood(model, opts.images, opts.ood_images, **labelled)
        if task == "fairness":
            return module.run_fairness(model, opts.images, opts.group_columns, seed=seed, **labelled)
        if task == "diagnostics":
            return module.run_diagnostics(model, opts.images, embed_opts, seed=seed, **common)
        if task == "generation":
            return module.run_generation(model, opts.images, opts.captions, opts.reference, embed_opts, seed=seed, **common)
        return module.run_skills(model, n=opts.scenes or 500, seed=2027 if opts.seed is None else seed, on_step=on_step, **common)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as dotted keys: ``{"before": {"ece": x}}`` -> ``{"before.ece": x}``."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def print_result(result) -> None:
    """The task's main table on stdout: per-skill rows for skills, per-score rows for OOD, else the metrics."""
    if result.task == "skills":
        table = Table(title=f"skills — {result.model} — {result.dataset}")
        for col in ("skill", "variant", "n", "accuracy", "chance"):
            table.add_column(col, justify="right" if col in ("n", "accuracy", "chance") else "left")
        for r in result.rows:
            table.add_row(r.skill, r.variant, str(r.n), f"{r.accuracy:.3f}", f"{r.chance:.3f}")
    elif result.task == "ood":
        from cliplab.evaluate.tasks.ood import table as ood_table

        table = Table(title=f"ood — {result.model} — {result.dataset} vs {result.ood_dataset}")
        for col in ("score", "auroc", "aupr", "fpr95"):
            table.add_column(col, justify="left" if col == "score" else "right")
        for row in ood_table(result):
            table.add_row(row["score"], *(f"{row[k]:.4f}" for k in ("auroc", "aupr", "fpr95")))
    else:
        table = Table(title=f"{result.task} — {result.dataset}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in flatten(result.metrics).items():
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console().print(table)


def write_outputs(result, out: Path, report: Path | None) -> None:
    write_json(result.to_json(), out)
    if report is not None:
        importlib.import_module(f"cliplab.evaluate.tasks.{result.task}").report(result).save(report)
