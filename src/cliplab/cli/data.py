"""``cliplab data``: make and inspect datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from PIL import Image
from rich.progress import track

from cliplab.cli import app
from cliplab.cli.common import ProgressOption, user_errors
from cliplab.data import scene_text, synthetic
from cliplab.data.scene_text import AltTextRates
from cliplab.errors import InputError
from cliplab.files import atomic_folder, atomic_write

data_app = typer.Typer(help="Make datasets: synthetic scenes with ground truth.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def write_scenes(out: Path, n: int, seed: int, split: str, image_size: int, max_objects: int, class_folders: str | None, masks: bool,
                 progress: bool = True, languages: list[str] | None = None, alt_text: AltTextRates | None = None,
                 long_captions: bool = False, shape_weights: dict[str, float] | None = None) -> int:  # fmt: skip
    """Write ``n`` scenes to ``out``: ``images/`` (one subfolder per class with ``class_folders``),
    optional ``masks/`` with ``classes.txt`` (line i names mask value i: background, then the
    shapes), and ``metadata.jsonl``; returns n. With ``languages`` the captions are in those
    languages: one row per image and language, with a ``language`` column. ``alt_text`` adds an
    ``alt_text`` column of noisy captions at those rates (drawn from scene i's own seed),
    ``long_captions`` a ``long_caption`` column, and ``shape_weights`` skews the shapes drawn.

    Everything goes to a temporary sibling folder first and is renamed into place at the end, so
    an interrupted run never leaves a half-written dataset behind.
    """
    if class_folders is not None and class_folders not in ("shape", "color", "size", "position", "background"):
        raise InputError(f"--class-folders {class_folders!r} is not an attribute; use shape, color, size, position or background")
    scenes = synthetic.iter_scenes(n, seed=seed, image_size=image_size, split=split, max_objects=max_objects, shape_weights=shape_weights)
    with atomic_folder(out) as tmp:
        lines = []
        for i, rec in enumerate(track(scenes, total=n, description="rendering", disable=not progress)):
            label = None
            if class_folders:
                label = rec.background if class_folders == "background" else rec.objects[0][class_folders]
            rel = Path("images", label.replace(" ", "_") if label else "", f"{i:06d}.png")
            (tmp / rel.parent).mkdir(parents=True, exist_ok=True)
            rec.image.save(tmp / rel)
            row = {"image": str(rel), "caption": rec.caption, "short_caption": rec.short_caption, "label": label,
                   "background": rec.background, "objects": rec.objects}  # fmt: skip
            if alt_text is not None:
                row["alt_text"] = scene_text.alt_text(rec.spec, np.random.default_rng([seed, i, 2]), alt_text)
            if long_captions:
                row["long_caption"] = scene_text.long_caption(rec.spec)
            if masks:
                mask_rel = Path("masks") / f"{i:06d}.png"
                (tmp / "masks").mkdir(exist_ok=True)
                Image.fromarray(rec.semantic_mask.astype("uint8")).save(tmp / mask_rel)
                row["semantic_mask"] = str(mask_rel)
            for lang in languages or [None]:
                if lang is not None:
                    row = {**row, "caption": synthetic.full_caption(rec.spec, lang), "short_caption": synthetic.short_caption(rec.spec, lang), "language": lang}
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        atomic_write(tmp / "metadata.jsonl", "".join(lines))
        if masks:  # what eval --task segmentation reads: line i names mask value i
            atomic_write(tmp / "classes.txt", "".join(f"{name}\n" for name in ("background", *synthetic.SHAPES)))
    return n


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create (must not exist or be empty)."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of images."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same images."),
    split: str = typer.Option("test", help="train | test | heldout (held-out shape-colour pairs)."),
    image_size: int = typer.Option(64, min=16, help="Image side in pixels."),
    max_objects: int = typer.Option(2, min=1, max=4, help="Objects per image: 1 to this."),
    language: str = typer.Option("en", "--language", help="Caption language(s): en, de, fr, es, zh, ja, ar, a comma list of them, or all. "
                                 "Several give one metadata row per image and language, with a language column."),
    class_folders: str = typer.Option(None, help="Also lay images out one folder per value of this attribute of the first object (shape, color, size, position, background)."),
    masks: bool = typer.Option(False, "--masks", help="Also write semantic masks (0 background, 1+shape index) as PNG, and classes.txt naming each value (for eval --task segmentation --images OUT)."),
    alt_text: bool = typer.Option(False, "--alt-text", help="Also write noisy web-style captions in an alt_text column (missing attributes, wrong colours, generic phrases)."),
    missing_rate: float = typer.Option(0.3, "--missing-rate", help="Alt-text: chance that each colour, size or position word of an object is left out."),
    wrong_colour_rate: float = typer.Option(0.15, "--wrong-colour-rate", help="Alt-text: chance that a colour word said is the wrong colour."),
    generic_rate: float = typer.Option(0.2, "--generic-rate", help="Alt-text: chance that a caption is only a generic phrase ('stock photo', 'image', ...)."),
    long_captions: bool = typer.Option(False, "--long-captions", help="Also write a multi-sentence long_caption column (first sentence: the short caption)."),
    tail_shapes: str = typer.Option(None, "--tail-shapes", help="Comma list of shapes made rarer (a long-tailed pool), e.g. star,heart."),
    tail_ratio: float = typer.Option(50.0, "--tail-ratio", help="How many times rarer the --tail-shapes are than the other shapes."),
    progress: ProgressOption = True,
) -> None:
    """Write synthetic scenes with captions and ground truth: images + metadata.jsonl.

    The result works as a dataset anywhere cliplab takes one: OUT/metadata.jsonl (captions,
    labels) or, with --class-folders, the folder OUT/images (labels from folder names).
    """
    with user_errors():
        if split not in synthetic.SPLITS:
            raise InputError(f"--split {split!r} is unknown; use one of {', '.join(synthetic.SPLITS)}")
        codes = list(synthetic.LANGUAGES) if language == "all" else [c.strip() for c in language.split(",") if c.strip()]
        bad = [c for c in codes if c not in synthetic.LANGUAGES]
        if bad or not codes:
            raise InputError(f"--language {language!r}: {'unknown ' + ', '.join(bad) if bad else 'none given'}; use {', '.join(synthetic.LANGUAGES)}, a comma list or all")
        rates = AltTextRates(missing_rate, wrong_colour_rate, generic_rate) if alt_text else None
        weights = synthetic.long_tail([s.strip() for s in tail_shapes.split(",") if s.strip()], tail_ratio) if tail_shapes is not None else None
        write_scenes(out, n, seed, split, image_size, max_objects, class_folders, masks, progress, None if codes == ["en"] else codes,
                     rates, long_captions, weights)  # fmt: skip
    said = "" if codes == ["en"] else f", captions in {', '.join(codes)}"
    typer.echo(f"wrote {n} {split} scenes to {out} (metadata.jsonl{said})")
