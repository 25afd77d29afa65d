"""``cliplab segment``: open-vocabulary segmentation of one image into named classes; ``cliplab refiner``: train a learned refinement head."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np
import typer

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    MaskPromptOption,
    ModelOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    SamKind,
    SamKindOption,
    SamWeightsOption,
    load_mask_prompt,
    load_model_for,
    read_names,
    sam_proposer,
    user_errors,
    warnings_as_lines,
)


class Method(str, Enum):
    auto = "auto"
    vanilla = "vanilla"
    maskclip = "maskclip"
    sclip = "sclip"
    clearclip = "clearclip"
    naclip = "naclip"


class Proposals(str, Enum):
    learned = "learned"
    dense = "dense"


def parse_background(value: str) -> list[str] | None:
    """'none' -> no background words; otherwise comma-separated words."""
    if value.strip().lower() == "none":
        return None
    return [w.strip() for w in value.split(",") if w.strip()] or None


def save_label_map(labels: np.ndarray, path: Path) -> None:
    """Class indices as a greyscale PNG (8-bit up to 256 classes, else 16-bit)."""
    from PIL import Image

    from cliplab.files import atomic_target

    image = Image.fromarray(labels.astype(np.uint8)) if labels.max(initial=0) < 256 else Image.fromarray(labels.astype(np.uint16))
    with atomic_target(path) as tmp:
        image.save(tmp, format="PNG")


@app.command("segment")
def segment_command(
    image: Path = typer.Option(..., "--image", help="The image to segment."),
    classes: str = typer.Option(..., "--classes", "-c", help="Class names 'sky,road,car' or a file with one per line."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write: labels.png (class index per pixel), overlay.png (colours and legend), areas.json."),
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    method: Method = typer.Option(Method.auto, "--method", help="How the last block is rewritten: auto (maskclip for a ResNet, naclip for a ViT), clearclip, sclip, naclip, maskclip, or vanilla (unchanged)."),
    templates: str = typer.Option("default", "--templates", help="Prompt templates: default | openai_imagenet | tip_adapter, or a .txt/.json file."),
    background: str = typer.Option("background", "--background", help="Words merged into a 'background' class listed first, comma-separated; 'none' for no background words."),
    threshold: float | None = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Pixels whose best class probability is below this become background."),
    size: int | None = typer.Option(None, "--size", min=8, help="Resize the short side to this many pixels before inference (default: the model's input size)."),
    window: int | None = typer.Option(None, "--window", min=8, help="Sliding-window crop in pixels (after resizing); default one pass over the whole image."),
    stride: int | None = typer.Option(None, "--stride", min=1, help="Sliding-window step in pixels (default half the window)."),
    refine: bool = typer.Option(False, "--pamr/--no-pamr", help="Refine label edges with pixel-adaptive mask refinement."),
    regions: bool = typer.Option(False, "--regions", help="Relabel each connected foreground region with the class of a crop around it (OVSeg-style mask classification; needs background words or --threshold)."),
    region_context: float = typer.Option(1.0, "--region-context", min=0.0, help="With --regions: how much larger than the region its crop is (1.0: twice its side)."),
    mask_prompt: MaskPromptOption = None,
    trident: bool = typer.Option(False, "--trident", help="For images larger than the model's input (with --size at the image's size): splice the --window crops' features into one map, pool it with a whole-image pass's affinities, refine in superpixels (Trident)."),
    trident_size: int | None = typer.Option(None, "--trident-size", min=8, help="With --trident: the short side of the whole-image pass (default: the model's input size)."),
    refiner: Path | None = typer.Option(None, "--refiner", help="A learned refinement head file (cliplab.dense.refine): pools the features and makes non-salient pixels background."),
    segmenter: Path | None = typer.Option(None, "--segmenter", help="A trained segmenter folder (cliplab segmenter train): its proposals, classified by its fine-tuned tower; "
                                          "with --trident its proposals refine Trident instead. Its base model is used (--model is ignored)."),
    proposals: Proposals | None = typer.Option(None, "--proposals", help="With --segmenter: learned (its proposer; the default) or dense (connected regions of the training-free map)."),
    sam_weights: SamWeightsOption = None,
    sam_kind: SamKindOption = SamKind.auto,
    precision: PrecisionOption = DEFAULT_PRECISION,
) -> None:
    """Segment an image into the given classes (plus background) and write the label map, an overlay and per-class areas."""
    from cliplab.data.images import open_image
    from cliplab.dense.overlay import overlay
    from cliplab.dense.segment import Segmenter
    from cliplab.errors import InputError
    from cliplab.files import atomic_folder, atomic_target, write_json

    with user_errors(), warnings_as_lines():
        names = read_names(classes, "--classes")
        picture = open_image(image)
        if sam_weights is not None and segmenter is None and not trident:
            raise InputError("--sam-weights proposes masks for --segmenter or --trident; add one of them")
        if sam_weights is not None and proposals is not None:
            raise InputError("--sam-weights replaces --proposals; pass one of them")
        prompt = load_mask_prompt(mask_prompt, segmenter)
        trained = None
        if segmenter is not None:
            from cliplab.dense.ovseg import OVSegmenter

            trained = OVSegmenter.load(segmenter)
        clip = trained.model if trained is not None else load_model_for(model, pretrained, precision)
        head = None
        if refiner is not None:
            from cliplab.dense.refine import CorrelationRefiner

            head = CorrelationRefiner.load(refiner)
        sam = sam_proposer(sam_weights, sam_kind, str(clip.device)) if sam_weights is not None else None
        if trained is not None and not trident:
            seg, used = trained.segment(picture, names, sam if sam is not None else (proposals or Proposals.learned).value), "trained"
        else:
            masks = sam if sam is not None else (lambda im: trained.propose(im)[0]) if trained is not None else None
            dense = Segmenter(clip, names, method=method.value, templates=templates, background=parse_background(background),
                              threshold=threshold, size=size, window=window, stride=stride, refine="pamr" if refine else None,
                              refiner=head, regions=regions, region_context=region_context, trident=trident,
                              trident_size=trident_size, proposals=masks, mask_prompt=prompt)  # fmt: skip
            seg, used = dense(picture), dense.method
        with atomic_folder(out) as tmp:
            save_label_map(seg.labels, tmp / "labels.png")
            with atomic_target(tmp / "overlay.png") as target:
                overlay(picture, seg.labels, seg.classes).save(target, format="PNG")
            write_json({"image": str(image), "model": clip.name, "precision": clip.precision, "method": used, "classes": seg.classes,
                        "areas": seg.areas()}, tmp / "areas.json")  # fmt: skip
    for name, area in sorted(seg.areas().items(), key=lambda kv: -kv[1]):
        typer.echo(f"{name:>20s} {area:7.2%}")
    typer.echo(f"wrote {out}/labels.png, overlay.png and areas.json")


@app.command("refiner")
def refiner_command(
    out: Path = typer.Option(..., "--out", "-o", help="The head file to write (safetensors), for `cliplab segment --refiner` and `cliplab eval --refiner`."),
    model: str = typer.Option("cliplab:shapes-vit", "--model", "-m", help="The ViT whose tokens the head reads (a spec, as for --model elsewhere)."),
    pretrained: PretrainedOption = None,
    teacher: str = typer.Option("cliplab:shapes-tiny", "--teacher", help="The model whose patch correlations the head learns (DINO's role in CLIP-DINOiser)."),
    teacher_layer: int = typer.Option(2, "--teacher-layer", min=1, help="Teacher layer: a ResNet stage (1-4) or a ViT's block count."),
    steps: int = typer.Option(300, "--steps", min=1, help="Adam steps on the cached tokens."),
    scenes: int = typer.Option(512, "--scenes", min=8, help="Synthetic train-split scenes to learn from."),
    seed: int = typer.Option(0, "--seed", help="Seed of the scenes and the head's initialisation."),
) -> None:
    """Train a CLIP-DINOiser-style refinement head for a ViT on synthetic scenes (every model frozen; minutes on a CPU).

    The head pools dense features with the teacher's predicted patch correlations and gates the
    background with a foreground map learned from the model's own class-token attention.
    """
    with user_errors(), warnings_as_lines():
        from cliplab.dense.refine import train_refiner
        from cliplab.models import load_model

        head = train_refiner(load_model(model, pretrained=pretrained, device="cpu"), load_model(teacher, device="cpu"), n_scenes=scenes,
                             steps=steps, teacher_layer=teacher_layer, seed=seed)  # fmt: skip
        head.save(out)
    typer.echo(f"wrote {out} (final loss {head.final_loss_:.4f})")


segmenter_app = typer.Typer(help="Train open-vocabulary segmenters (mask proposals + MAFT+/OVSeg mask classification).", no_args_is_help=True)
app.add_typer(segmenter_app, name="segmenter")


@segmenter_app.command("train")
def segmenter_train(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (weights + ovsegmenter.json); a checkpoint there is resumed."),
    model: str = typer.Option("cliplab:shapes-vit", "--model", "-m", help="The ViT to build on (a spec, as for --model elsewhere)."),
    pretrained: PretrainedOption = None,
    images: str = typer.Option("synthetic:2000", "--images", "-i", help="Training scenes with instance masks and captions: synthetic:<n>[:seed] (train split)."),
    classes: str | None = typer.Option(None, "--classes", "-c", help="The training vocabulary ('a,b,c' or a file; default circle, square, triangle, star, cross, diamond); "
                                       "objects of other classes are ignored in every loss."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimiser steps (the default takes 7-9 minutes on one thread; at most 20 on 2 cores)."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, help="Scenes (and object crops) per step."),
    minutes: float | None = typer.Option(None, "--minutes", min=0.1, help="Stop after this long (a checkpoint keeps the progress; run again to go on)."),
    mask_prompt_steps: int = typer.Option(0, "--mask-prompt-steps", min=0, help="Then tune a mask prompt for the crop classifier for this many steps (OVSeg; 0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the heads' initialisation and the batches."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch CPU threads."),
    progress: ProgressOption = True,
) -> None:
    """Train a segmenter: a class-agnostic mask proposer and a fine-tuned tower that classifies masks
    against any class names (MAFT+ content-dependent transfer and representation compensation, OVSeg
    masked crops paired with caption nouns). Use it with 'cliplab segment --segmenter OUT'."""
    import torch
    from rich.progress import Progress

    from cliplab.dense.ovseg import CHECKPOINT, SEEN_SHAPES, OVSegmenter
    from cliplab.models import load_model

    torch.set_num_threads(threads)
    with user_errors(), warnings_as_lines():
        names = read_names(classes, "--classes") if classes is not None else list(SEEN_SHAPES)
        if (out / CHECKPOINT).exists():
            typer.echo(f"resuming from {out / CHECKPOINT}", err=True)
        ovseg = OVSegmenter(load_model(model, pretrained=pretrained, device="cpu"), pretrained=pretrained)
        with Progress(disable=not progress) as bar:
            task = bar.add_task("training", total=steps)

            def on_step(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, description=f"training (loss {loss:.3f})")

            ovseg.fit(images, names, steps=steps, batch_size=batch_size, seed=seed, out=out, on_step=on_step,
                      max_seconds=None if minutes is None else minutes * 60, mask_prompt_steps=mask_prompt_steps)  # fmt: skip
    if ovseg.steps_done_ < steps:
        typer.echo(f"stopped at step {ovseg.steps_done_} of {steps}; run the same command again to resume")
    else:
        typer.echo(f"wrote {out}; use it with: cliplab segment --segmenter {out}")


@segmenter_app.command("prompt")
def segmenter_prompt(
    out: Path = typer.Option(..., "--out", "-o", help="The mask prompt file to write (safetensors), for `cliplab segment --regions --mask-prompt`."),
    model: str = typer.Option("cliplab:shapes-vit", "--model", "-m", help="The ViT the prompt is for (a spec, as for --model elsewhere)."),
    pretrained: PretrainedOption = None,
    classes: str | None = typer.Option(None, "--classes", "-c", help="The training vocabulary ('a,b,c' or a file; default the six seen shapes); objects of other shapes are left out."),
    depth: int = typer.Option(3, "--depth", min=1, help="Blocks whose blank-patch tokens are replaced (OVSeg: 3)."),
    steps: int = typer.Option(100, "--steps", min=1, help="Adam steps."),
    scenes: int = typer.Option(256, "--scenes", min=1, help="Synthetic train-split scenes whose objects' masked crops it learns from."),
    seed: int = typer.Option(0, "--seed", help="Seed of the scenes, the batches and the prompt's initialisation."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch CPU threads."),
) -> None:
    """Tune an OVSeg mask prompt on synthetic scenes (the model frozen; minutes on a CPU): learned tokens
    for the patches a region's mask leaves blank, so masked crops classify better."""
    import torch

    from cliplab.dense.ovseg import SEEN_SHAPES
    from cliplab.dense.regions import train_mask_prompt
    from cliplab.models import load_model

    torch.set_num_threads(threads)
    with user_errors(), warnings_as_lines():
        names = read_names(classes, "--classes") if classes is not None else list(SEEN_SHAPES)
        prompt = train_mask_prompt(load_model(model, pretrained=pretrained, device="cpu"), depth=depth, n_scenes=scenes, steps=steps,
                                   seed=seed, classes=names)  # fmt: skip
        prompt.save(out)
    typer.echo(f"wrote {out}; use it with: cliplab segment --regions --mask-prompt {out}")
