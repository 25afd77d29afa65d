"""``cliplab demo``: the main job end to end on the bundled model, offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    ModelOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    load_model_for,
    user_errors,
)
from cliplab.data import synthetic
from cliplab.errors import InputError
from cliplab.files import write_json

if TYPE_CHECKING:
    from cliplab.evaluate.report import Report
    from cliplab.evaluate.scenes import SceneEvaluation


@app.command()
def demo(
    model_spec: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    n: int = typer.Option(1000, "--n", min=10, help="Images per task (classification and retrieval each)."),
    seed: int = typer.Option(2026, help="Seed of the fresh test scenes (training never used it)."),
    split: str = typer.Option("test", help="test, or heldout for shape-colour pairs never seen in training."),
    report: Path = typer.Option(Path("demo_report.html"), help="Where to write the HTML report."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the figures as JSON here."),
    progress: ProgressOption = True,
) -> None:
    """Generate fresh synthetic scenes, classify every attribute zero-shot, retrieve captions.

    Prints accuracy per attribute and recall@1/5/10 in both directions, and writes an HTML report
    with a confusion matrix per attribute and example retrievals. Runs offline on the bundled model by default.
    """
    from cliplab.evaluate import scenes

    console = Console(stderr=True)
    with user_errors(), Progress(console=console, transient=True, disable=not progress) as bar:
        if split not in synthetic.SPLITS:
            raise InputError(f"--split {split!r} is unknown; use one of {', '.join(synthetic.SPLITS)}")
        task = bar.add_task("loading model", total=6 + len(synthetic.ATTRIBUTES))
        model = load_model_for(model_spec, pretrained, precision, announce=progress)

        def step(description: str) -> None:
            bar.update(task, advance=1, description=description)

        evaluation = scenes.evaluate_scenes(model, n, n, seed, split, synthetic.ATTRIBUTES, on_step=step)
        step("writing the report")
        figures = {"model": model.name, "precision": model.precision, "n": n, **evaluation.figures()}
        _report(figures, evaluation).save(report)
        if out:
            write_json(figures, out)
    _print_tables(figures)
    typer.echo(f"report: {report}")


def _report(figures: dict, evaluation: SceneEvaluation) -> Report:
    from cliplab.evaluate import plots
    from cliplab.evaluate.eval_report import retrieval_grid
    from cliplab.evaluate.metrics import confusion_matrix
    from cliplab.evaluate.report import Report

    rep = Report(f"cliplab demo: {figures['model']}", f"{figures['n']} fresh {figures['split']} scenes, seed {figures['seed']}")
    rep.add_table("Zero-shot accuracy (single-object scenes)", [
        {"attribute": a, "accuracy": r.accuracy, "classes": len(r.classes), "prompt": synthetic.ATTRIBUTE_PROMPTS[a]}
        for a, r in evaluation.attributes.items()
    ])  # fmt: skip
    rep.add_table("Caption retrieval (full captions, 1-2 objects)", _retrieval_rows(figures["retrieval"]))
    for attribute, r in evaluation.attributes.items():
        cm = confusion_matrix(r.y_true, r.y_pred, len(r.classes))
        rep.add_figure(f"Confusion matrix: {attribute}", plots.confusion_matrix_png(cm, r.classes))
    captioned = evaluation.captioned
    grid = retrieval_grid(evaluation.text_emb, evaluation.image_emb, [r.caption for r in captioned], np.arange(len(captioned)),
                          lambda i: captioned[i].image, k=5)  # fmt: skip
    rep.add_figure("Example retrievals (text to image, top 5)", grid, "The true image is outlined green, others red.")
    return rep


def _retrieval_rows(retrieval: dict[str, float]) -> list[dict]:
    ks = sorted({int(key.rsplit("@", 1)[1]) for key in retrieval})
    return [
        {"direction": name, **{f"R@{k}": retrieval[f"{prefix}_retrieval_recall@{k}"] for k in ks}}
        for name, prefix in (("text to image", "image"), ("image to text", "text"))
    ]


def _print_tables(figures: dict) -> None:
    console = Console()
    acc = Table(title=f"zero-shot accuracy, {figures['model']} ({figures['precision']}, {figures['split']}, n={figures['n']})")
    acc.add_column("attribute")
    acc.add_column("accuracy", justify="right")
    for attribute, value in figures["zeroshot_accuracy"].items():
        acc.add_row(attribute, f"{value:.1%}")
    ret = Table(title="caption retrieval")
    rows = _retrieval_rows(figures["retrieval"])
    for column in rows[0]:
        ret.add_column(column, justify="right" if column != "direction" else "left")
    for row in rows:
        ret.add_row(*(v if isinstance(v, str) else f"{v:.1%}" for v in row.values()))
    console.print(acc)
    console.print(ret)
