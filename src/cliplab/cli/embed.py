"""``cliplab embed``: embed a collection of images once and save the features."""

from __future__ import annotations

import logging
import os
import warnings
from enum import Enum
from pathlib import Path
from typing import Optional

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
    LabelColOption,
    LayersOption,
    ModelOption,
    NoCacheOption,
    OnConflict,
    OnConflictOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    TokensOption,
    WorkersOption,
    open_images,
    say_what_was_left_out,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError


def quiet_ray() -> None:
    """Keep Ray's INFO lines and deprecation notices about its own settings off the terminal: Ray
    Data's log level (its RAY_DATA_LOG_LEVEL, unless the user set one) and a filter for Ray's
    DeprecationWarnings, inside the command's ``warnings_as_lines``."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command("embed")
def embed_command(
    images: ImagesOption = ...,
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write features.safetensors and features.json to (created if needed)."),
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
    label_col: LabelColOption = None,
    on_conflict: OnConflictOption = OnConflict.error,
    progress: ProgressOption = True,
    engine: Engine = typer.Option(Engine.local, "--engine", help="local (this process and its decode workers) or ray (Ray Data: a local runtime, or --ray-address)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join with --engine ray (default: start a local runtime)."),
    layers: LayersOption = None,
    tokens: TokensOption = "cls",
) -> None:
    """Embed images (float32, L2-normalised rows with ids, labels and captions) and save them to a folder.

    Images that cannot be read are skipped and listed in OUT/skipped.csv. With --layers, the rows are
    multi-level features of a ViT (COMM: chosen blocks' LayerNorm-ed tokens side by side) for heads
    such as a linear probe; they have no text counterpart, so zero-shot commands do not take them.
    """
    from cliplab.features import embed
    from cliplab.features.ray_engine import embed_ray

    with user_errors(), warnings_as_lines():
        if engine is Engine.local and ray_address is not None:
            raise InputError("--ray-address applies to --engine ray")
        if engine is Engine.ray:
            local_only = {"--cache-dir": cache_dir is not None, "--no-cache": no_cache, "--workers": workers is not None,
                          "--decode": decode.value != "auto", "--layers": layers is not None}  # fmt: skip
            stray = next((flag for flag, given in local_only.items() if given), None)
            if stray:
                raise InputError(f"{stray} applies to the local engine, not to --engine ray")
        source = open_images(images, image_col, caption_col, label_col, on_conflict)
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress, layers, tokens)
        if engine is Engine.ray:
            clip = options.load_model()
            quiet_ray()
            feats = embed_ray(clip, source, pretrained=pretrained, precision=clip.precision, address=ray_address,
                              batch_size=batch_size or 64, logging_level=logging.ERROR)  # fmt: skip
        else:
            clip, embed_kwargs = options.prepare()
            feats = embed(clip, source, **embed_kwargs)
        feats.save(out)
        say_what_was_left_out(feats, out)
    stats = feats.stats
    typer.echo(
        f"embedded {len(feats)} images ({feats.dim} dims) to {out}; "
        f"cache hits {stats.get('cache_hits', 0)} of {stats.get('images', len(feats))}; precision {stats.get('precision')}"
    )
