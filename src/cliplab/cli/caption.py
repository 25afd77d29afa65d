"""``cliplab caption``: caption a collection with a trained captioner; ``cliplab caption train``: train one
(``--teachers``: distil it from trained captioners, LightCap's ensemble distillation)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    BatchSizeOption,
    CacheDirOption,
    CaptionColOption,
    DecodeOption,
    EmbeddingOptions,
    ImageColOption,
    ImagesOption,
    ModelOption,
    NoCacheOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    WorkersOption,
    open_images,
    option_help,
    say_what_was_left_out,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError

caption_app = typer.Typer(
    rich_markup_mode=None,
    help="Caption images with a LightCap-style captioner on a frozen CLIP model (cliplab caption --images SRC --out captions.jsonl), "
    "or train one (cliplab caption train --images SRC --out DIR).",
)
app.add_typer(caption_app, name="caption")


class DecoderPrecision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


CaptionerOption = Annotated[Optional[Path], typer.Option("--captioner", help="A captioner folder (cliplab caption train --out); default: the bundled captioner of --model.")]


@caption_app.callback(invoke_without_command=True)
def caption_command(
    ctx: typer.Context,
    images: Annotated[Optional[str], typer.Option("--images", "-i", help=option_help(ImagesOption))] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="JSON Lines file to write: one {\"id\", \"caption\"} object per image.")] = None,
    captioner: CaptionerOption = None,
    beam: int = typer.Option(1, "--beam", min=1, help="Beam width (1: greedy decoding)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1, help="Most tokens per caption, end of text included (default: the captioner's)."),
    decoder_precision: DecoderPrecision = typer.Option(DecoderPrecision.fp32, "--decoder-precision", help="Precision of the caption decoder on the CPU: fp32, bf16 or int8."),
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    batch_size: BatchSizeOption = None,
    decode: DecodeOption = "auto",
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    workers: WorkersOption = None,
    image_col: ImageColOption = None,
    progress: ProgressOption = True,
) -> None:
    """Write one caption per image (JSON Lines: id, caption). Images that cannot be read are skipped and listed beside --out."""
    if ctx.invoked_subcommand is not None:
        return
    from cliplab.caption import Captioner
    from cliplab.files import atomic_write

    with user_errors(), warnings_as_lines():
        if images is None or out is None:
            raise InputError("pass --images SRC and --out captions.jsonl (or train a captioner: cliplab caption train --help)")
        source = open_images(images, image_col)
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
        clip, embed_kwargs = options.prepare()
        cap = Captioner.load(captioner, model=clip)
        feats = cap.features(source, **embed_kwargs)
        texts = cap.caption_features(feats.X, beam=beam, max_length=max_length, precision=decoder_precision.value)
        atomic_write(out, "".join(json.dumps({"id": i, "caption": t}, ensure_ascii=False) + "\n" for i, t in zip(feats.ids, texts)))
        say_what_was_left_out(feats, out)
    typer.echo(f"captioned {len(texts)} images to {out}")


@caption_app.command("train")
def train_command(
    images: ImagesOption = ...,
    out: Path = typer.Option(..., "--out", "-o", help="Captioner folder to write (new or empty): captioner.json, captioner.safetensors; pass it to --captioner."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Training steps (3000 batches of 64: about 25 min on one CPU thread, the bundled captioner's recipe)."),
    train_batch_size: int = typer.Option(64, "--train-batch-size", min=1, help="Image-caption pairs per training step."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (AdamW, warm-up a tenth, cosine decay)."),
    width: int = typer.Option(256, "--width", min=8, help="Decoder width."),
    layers: int = typer.Option(2, "--layers", min=1, help="Decoder layers."),
    k: int = typer.Option(8, "--k", min=1, help="Concepts kept per image."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation, the batches and dropout."),
    teachers: Optional[str] = typer.Option(None, "--teachers", help="Comma-separated captioner folders (trained on the same captions and model) "
                                           "to distil from: the student learns their averaged token distributions besides the captions."),
    ensemble_heads: int = typer.Option(1, "--ensemble-heads", min=1, help="Parallel output heads, averaged; with --teachers, 1 (the averaged "
                                       "teachers) or one per teacher (head m distilled from teacher m)."),
    temperature: float = typer.Option(2.0, "--temperature", min=0.01, help="Softmax temperature of the distillation (with --teachers)."),
    distill_weight: float = typer.Option(0.5, "--distill-weight", min=0.0, max=1.0, help="Weight alpha of the distillation term: (1 - alpha) CE + alpha T^2 KL."),
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    batch_size: BatchSizeOption = None,
    decode: DecodeOption = "auto",
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    workers: WorkersOption = None,
    image_col: ImageColOption = None,
    caption_col: CaptionColOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train a captioner on image-caption pairs (synthetic:<n> scenes carry their full captions; a manifest its caption column).

    The model stays frozen: its embedding and grid features are embedded once (and cached); a concept
    scorer, a modulator and a 2-layer transformer decoder are trained on them. With --teachers (say, two
    6-layer captioners trained with different --seed), a smaller captioner is distilled from them.
    """
    from cliplab.caption import Captioner

    with user_errors(), warnings_as_lines():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty; choose a new output folder")
        source = open_images(images, image_col, caption_col)
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
        clip, embed_kwargs = options.prepare()
        teacher_caps = [Captioner.load(Path(part.strip()), model=clip) for part in (teachers or "").split(",") if part.strip()]
        cap = Captioner(clip, steps=steps, batch_size=train_batch_size, lr=lr, width=width, layers=layers, k=k, seed=seed,
                        ensemble_heads=ensemble_heads, temperature=temperature, distill_weight=distill_weight)  # fmt: skip
        feats = cap.features(source, **embed_kwargs)
        cap.fit(feats, teachers=teacher_caps or None, progress=progress)
        cap.save(out)
        say_what_was_left_out(feats, out)
    last = cap.history_[-1]
    distilled = f", distillation loss {last['distill_loss']:.4f} ({len(teacher_caps)} teachers)" if "distill_loss" in last else ""
    typer.echo(f"trained on {len(feats)} images, {steps} steps: caption loss {last['caption_loss']:.4f}, concept loss {last['concept_loss']:.4f}{distilled}")
    typer.echo(f"wrote {out}; caption with: cliplab caption --captioner {out} --model {model} --images SRC --out captions.jsonl")
