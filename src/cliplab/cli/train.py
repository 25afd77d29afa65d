"""``cliplab train``: contrastive pre-training, post-training and fine-tuning of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cliplab.cli import app
from cliplab.cli.common import (
    ImagesOption,
    ModelOption,
    PretrainedOption,
    ProgressOption,
    option_help,
    user_errors,
    warnings_as_lines,
)
from cliplab.train.config import TrainConfig

_DEFAULTS = TrainConfig()


def _opt(*names: str, help: str, default_shown: Any = None, **kw: Any) -> Any:
    """An option that is None unless given, so a --config file fills what the flags leave out."""
    shown = default_shown if default_shown is not None else getattr(_DEFAULTS, names[0].lstrip("-").replace("-", "_"), None)
    return typer.Option(None, *names, help=help, show_default=str(shown) if shown is not None else False, **kw)


@app.command("train")
def train_command(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help=option_help(ModelOption), show_default=_DEFAULTS.model),
    pretrained: PretrainedOption = None,
    data: str | None = typer.Option(None, "--images", "--data", "-i", help=option_help(ImagesOption) + " Needs captions. --data is the same option.",
                                       show_default=_DEFAULTS.data),
    objectives: str | None = _opt("--objectives", help="Comma list of objectives, each with an optional weight, e.g. clip,hardneg:0.5. "
                                     "Names: clip, siglip, infoloob, cloob, hardneg, m2mix, rafa, hycd, distill, fmdistill, textdistill, pcm, dino, selfdist."),
    steps: int | None = _opt("--steps", help="Optimizer steps.", min=1),
    batch_size: int | None = _opt("--batch-size", "-b", help="Global batch size (all processes together).", min=1),
    lr: float | None = _opt("--lr", help="Peak learning rate (AdamW, warm-up then cosine decay); default 5e-4 suits the bundled models, use 1e-5 to 5e-5 for a large pretrained CLIP."),
    warmup: int | None = _opt("--warmup", help="Warm-up steps.", default_shown="a tenth of --steps", min=0),
    weight_decay: float | None = _opt("--weight-decay", help="AdamW weight decay on weight matrices."),
    grad_clip: float | None = _opt("--grad-clip", help="Clip the global gradient norm to this (0: no clipping)."),
    accum: int | None = _opt("--accum", help="Gradient accumulation steps per optimizer step (features are cached, so contrastive losses see the whole batch).", min=1),
    precision: str | None = _opt("--precision", help="fp32, bf16 (autocast) or fp16 (CUDA, with loss scaling)."),
    device: str | None = _opt("--device", help="cpu, cuda, cuda:1 ...", default_shown="cuda if available"),
    seed: int | None = _opt("--seed", help="Seed of the batches and of every random draw."),
    out: Path | None = _opt("--out", "-o", help="Run folder: model.safetensors, config.yaml, metrics.jsonl, summary.json, checkpoints/."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint (bit for bit)."),
    config: Path | None = typer.Option(None, "--config", help="YAML file of settings (the flag names with - or _); flags given here win."),
    ckpt_every: int | None = _opt("--ckpt-every", help="Checkpoint every N steps (0: only at the end).", min=0),
    evaluate: str | None = _opt("--evaluate", "--eval", help="Evaluation during the run, a comma list of: scenes (zero-shot, retrieval and colour binding on "
                                "synthetic scenes), regions (shape accuracy of each object's box through encode_regions), dense (plain naclip mIoU, "
                                "foreground IoU, heart/crescent IoU); or none; or auto: scenes for cliplab: models, none for openclip: and hf: models. "
                                "--eval is the same option."),
    eval_every: int | None = _opt("--eval-every", help="Evaluate every N steps (0: before and after only).", min=0),
    eval_n: int | None = _opt("--eval-n", help="Scenes per synthetic-scene evaluation (0: no evaluation).", min=0),
    log_every: int | None = _opt("--log-every", help="Write a metrics line every N steps.", min=1),
    workers: int | None = _opt("--workers", help="Batch-building processes (0: build in this process).", min=0),
    rewrites: bool | None = typer.Option(None, "--rewrites/--no-rewrites", help="Add a rule-based caption rewrite (synonyms, reordered clauses) to each step's choices (LaCLIP).", show_default="no"),
    long_text: bool | None = typer.Option(None, "--long-text/--no-long-text", help="Stretch the text positions to 248 (Long-CLIP) before training.", show_default="no"),
    text_tower: str | None = _opt("--text-tower", help="A transformers text encoder (folder or repo id) that replaces the text tower, with a new projection.", default_shown="keep"),
    freeze_text_tower: bool | None = typer.Option(None, "--freeze-text-tower/--tune-text-tower", help="Keep the swapped-in text encoder frozen (its projection still trains).", show_default="tune"),
    teacher: str | None = _opt("--teacher", help="Model spec of the teacher for the distill objective.", default_shown="none"),
    teacher_pretrained: str | None = _opt("--teacher-pretrained", help="Weights of the teacher.", default_shown="none"),
    teacher_features: str | None = _opt("--teacher-features", help="Feature folder (cliplab embed) with the teacher's image embeddings of the training data.", default_shown="none"),
    languages: str | None = _opt("--languages", help="Synthetic scenes: caption languages, e.g. en,de,zh; each caption of each step is said in one drawn "
                                 "from them (RS-M-CLIP's translation augmentation), and textdistill's teacher reads its English parallel.", default_shown="en"),
    distill_loss: str | None = _opt("--distill-loss", help="textdistill's loss: cosine, mse or smoothl1 (on L2-normalised features)."),
    lock_image: bool | None = typer.Option(None, "--lock-image/--tune-image", help="Freeze the image tower (LiT: locked-image tuning; batch-norm statistics stay put too): the text tower learns to read fixed image features.", show_default="tune"),
    lock_text: bool | None = typer.Option(None, "--lock-text/--tune-text", help="Freeze the text tower (the logit scale still learns): the image tower learns against fixed text features.", show_default="tune"),
    prompter: str | None = _opt("--prompter", help="The cloc objective's region prompter: block (CLOC's: a learned transformer block reads the box) or "
                                "masked-class (no parameters: a copy of the class token per box attends only to the box's cells in every block, "
                                "so the region loss trains the tower itself)."),
    region_exclude: str | None = _opt("--region-exclude", help="Region objectives: comma list of words no training region's phrase may name (held-out concepts stay in the images).", default_shown="none"),
    local_loss: bool | None = typer.Option(None, "--local-loss/--global-loss", help="Contrast local rows against gathered features (open_clip's local loss).", show_default="global"),
    gather_with_grad: bool | None = typer.Option(None, "--gather-with-grad/--gather-without-grad", help="Back-propagate through gathered features of other processes.", show_default="without"),
    tensorboard: bool | None = typer.Option(None, "--tensorboard/--no-tensorboard", help="Also write TensorBoard scalars (needs the tensorboard package).", show_default="no"),
    progress: ProgressOption = True,
) -> None:
    """Train or post-train a model on image-caption pairs with any mix of objectives.

    Start from any model spec (the bundled model, openclip:<arch> random or with weights, hf:...),
    train on a captioned source or synthetic:<n>[:seed], and find the weights in OUT/model.safetensors;
    the run folder is a model spec: --model OUT on any command, cliplab.load_model("OUT") in Python.
    Run on several processes with: torchrun --nproc-per-node 2 -m cliplab train ...
    """
    from cliplab.train.config import read_yaml, resumed
    from cliplab.train.trainer import train

    names = [n for n in ctx.params if n not in ("ctx", "config", "resume", "progress")]
    given = {n: ctx.params[n] for n in names if ctx.params[n] is not None}  # options default to None: given ones are set
    if "out" in given:
        given["out"] = str(given["out"])
    if given.get("grad_clip") == 0:
        given["grad_clip"] = None
    given["progress"] = progress
    with user_errors(), warnings_as_lines():
        settings = {**(read_yaml(config) if config else {}), **given}
        saved = Path(settings.get("out", _DEFAULTS.out)) / "config.yaml"
        cfg = resumed(saved, settings) if resume and saved.is_file() else TrainConfig(**settings).check()
        result = train(cfg, resume=resume, on_log=_echo_eval)
    if result.is_main:  # under torchrun every process returns; one line is enough
        typer.echo(f"trained {result.steps_run} steps in {result.wall_s:.0f} s ({result.samples_per_s:.1f} samples/s), "
                   f"{result.steps} steps in all; the model: --model {result.out}")  # fmt: skip


def _echo_eval(record: dict) -> None:
    if "eval" in record:
        e, said = record["eval"], []
        if "zeroshot_accuracy" in e:
            acc, bind = e["zeroshot_accuracy"], e["colour_binding"]
            said.append(f"shape {acc['shape']:.3f} colour {acc['color']:.3f} colour-binding full {bind['full']:.3f} "
                        f"short {bind['short']:.3f} image R@1 {e['retrieval']['image_retrieval_recall@1']:.3f}")  # fmt: skip
        if "region_accuracy" in e:
            said.append(f"region accuracy {e['region_accuracy']:.3f}")
        if "dense" in e:
            d = e["dense"]
            held_out = "n/a" if d["held_out_iou"] is None else f"{d['held_out_iou']:.3f}"
            said.append(f"naclip mIoU {d['miou']:.3f} foreground IoU {d['foreground_iou']:.3f} heart/crescent IoU {held_out}")
        typer.echo(f"step {record['step']}: " + ", ".join(said), err=True)
