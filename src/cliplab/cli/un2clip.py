"""``cliplab un2clip``: fine-tune a model's image tower through a frozen decoder of its embeddings (un²CLIP)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    ModelOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError

DEFAULT_DATA = "synthetic:16000"


class Decoder(str, Enum):
    regression = "regression"
    diffusion = "diffusion"

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Model folder to write (new or empty): model.safetensors, cliplab_model.json, "
                                         "decoder.safetensors, un2clip.json; --model OUT loads it on every command.")]


@app.command("un2clip")
def un2clip_command(
    out: OutOption,
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    data: str = typer.Option(DEFAULT_DATA, "--data", "--images", "-i", help="Training images (captions are not used): a folder, a manifest, .tar shards, or synthetic:<n>[:seed] "
                             "(scenes of the train split)."),
    decoder: Decoder = typer.Option(Decoder.regression, "--decoder", help="The frozen generator: regression (embedding -> image, MSE) or "
                                    "diffusion (a small conditional DDPM, un²CLIP's denoising loss)."),
    decoder_size: int = typer.Option(16, "--decoder-size", help="Pixels per side the diffusion decoder draws (a multiple of 4)."),
    decoder_steps: int = typer.Option(1500, "--decoder-steps", min=0, help="Stage 1: decoder steps on the frozen model's embeddings."),
    steps: int = typer.Option(300, "--steps", min=0, help="Stage 2: image-tower steps through the frozen decoder."),
    lr: float = typer.Option(1e-3, "--lr", help="Stage 2 peak learning rate (AdamW, warm-up a tenth, cosine decay)."),
    decoder_lr: float = typer.Option(2e-3, "--decoder-lr", help="Stage 1 peak learning rate."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Stage 2: images per step."),
    decoder_batch_size: int = typer.Option(64, "--decoder-batch-size", min=1, help="Stage 1: images per step."),
    anchor: float = typer.Option(0.1, "--anchor", min=0.0, help="Weight of the text-alignment regulariser: squared distance of each "
                                 "embedding to the starting model's (0: none)."),
    noise: float = typer.Option(0.1, "--noise", min=0.0, help="Stage 1: unCLIP noise augmentation of the decoder's condition (norm of the noise)."),
    finetune_noise: float = typer.Option(0.0, "--finetune-noise", min=0.0, help="Stage 2: the same noise on the condition while the tower tunes."),
    merge: float = typer.Option(0.55, "--merge", help="The tuned tower's share at the end: start + merge x (tuned - start), WiSE-FT's "
                                "weight-space ensemble (1: the tuned tower as it is)."),
    loss_size: int = typer.Option(16, "--loss-size", help="Regression: compare decoded and real images area-averaged to this many pixels "
                                  "a side (a divisor of 64; below 64 background texture averages out and objects carry the loss)."),
    t_min: float = typer.Option(0.0, "--t-min", help="Diffusion, stage 2: draw timesteps from [t-min, t-max) of the schedule (fractions; "
                                "low t is little noise, where detail matters)."),
    t_max: float = typer.Option(0.3, "--t-max", help="Diffusion, stage 2: upper end of the timesteps drawn (fraction of the schedule)."),
    draws: int = typer.Option(4, "--draws", min=1, help="Diffusion, stage 2: (timestep, noise) draws per image and step."),
    seed: int = typer.Option(0, "--seed", help="Seed of the decoder's initialisation, the batches and the noise."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    progress: ProgressOption = True,
) -> None:
    """Make a model's image embedding keep more visual detail (un²CLIP, Li et al. 2025).

    Stage 1 trains a small decoder conditioned on the frozen model's embeddings of --data (by default
    embedding -> 64-px image by MSE; --decoder diffusion: a conditional DDPM at 16 px); stage 2 tunes the
    image tower so the frozen decoder reconstructs (denoises) the images better, with an anchor to the
    starting embeddings (--anchor; 0 drops it); last, the tuned weights are merged with the starting
    ones (--merge). The defaults on cliplab:shapes-vit take about 8 minutes of one core.
    The text tower is not changed. Measure the result with 'cliplab eval mmvp --model OUT'.
    """
    from cliplab.models import load_model
    from cliplab.train.un2clip import (
        Un2ClipConfig,
        run_un2clip,
        save_un2clip,
        training_images,
    )

    with user_errors(), warnings_as_lines():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty; choose a new output folder")
        config = Un2ClipConfig(decoder=decoder.value, decoder_size=decoder_size, t_min=t_min, t_max=t_max, draws=draws, decoder_steps=decoder_steps, steps=steps, lr=lr, decoder_lr=decoder_lr, batch_size=batch_size, decoder_batch_size=decoder_batch_size,
                               anchor=anchor, noise=noise, finetune_noise=finetune_noise, merge=merge, loss_size=loss_size, seed=seed).check()  # fmt: skip
        images = training_images(data)
        if len(images) < 2:
            raise InputError(f"--data {data}: un2clip needs at least 2 images, found {len(images)}")
        clip = load_model(model, pretrained=pretrained, precision=getattr(precision, "value", precision), device=device)
        if progress:
            typer.echo(f"un2clip: {clip.name}, {len(images)} images; decoder {decoder_steps} steps, image tower {steps} steps", err=True)
        result = run_un2clip(clip, images, config, progress=progress)
        save_un2clip(result, out, model)  # atomic: a failure leaves no folder
    s = result.summary()
    dec, ft = s["decoder"]["loss"], s["finetune"]
    typer.echo(f"decoder loss {dec.get('first', float('nan')):.4f} -> {dec.get('last', float('nan')):.4f}; "
               + (f"reconstruction {ft['reconstruction']['first']:.4f} -> {ft['reconstruction']['last']:.4f}, "
                  f"anchor {ft['anchor']['last']:.5f}; " if ft else "")
               + ", ".join(f"{k} {v['wall_s']:.0f} s wall / {v['cpu_s']:.0f} s CPU" for k, v in s["times"].items()))  # fmt: skip
    typer.echo(f"wrote {out}; the model: --model {out}")
