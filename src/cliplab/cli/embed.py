"""``cliplab embed``: embed a collection of images once and save the features."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cliplab.cli import app
from cliplab.cli.common import (
    BATCH_SIZE_OPTION,
    CACHE_DIR_OPTION,
    IMAGES_OPTION,
    MODEL_OPTION,
    PRETRAINED_OPTION,
    PROGRESS_OPTION,
    WORKERS_OPTION,
    user_errors,
    warnings_as_lines,
)


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command("embed")
def embed_command(
    images: str = IMAGES_OPTION,
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write features.safetensors and features.json to (created if needed)."),
    model: str = MODEL_OPTION,
    pretrained: Optional[str] = PRETRAINED_OPTION,
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="Compute precision: fp32 | bf16 | fp16 (fp16 needs CUDA). Outputs are float32 either way."),
    batch_size: int = BATCH_SIZE_OPTION,
    cache_dir: Optional[Path] = CACHE_DIR_OPTION,
    workers: Optional[int] = WORKERS_OPTION,
    progress: bool = PROGRESS_OPTION,
    engine: Engine = typer.Option(Engine.local, "--engine", help="local (this process and its decode workers) or ray (Ray Data: a local runtime, or --ray-address)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join with --engine ray (default: start a local runtime)."),
) -> None:
    """Embed images (float32, L2-normalised rows with ids, labels and captions) and save them to a folder."""
    from cliplab.features import embed
    from cliplab.features.ray_engine import embed_ray
    from cliplab.models import load_model

    with user_errors(), warnings_as_lines():
        clip = load_model(model, pretrained=pretrained, precision=precision.value)
        feats = embed_ray(clip, images, pretrained=pretrained, address=ray_address, batch_size=batch_size) if engine is Engine.ray else embed(clip, images, cache_dir=cache_dir, batch_size=batch_size, num_workers=workers, progress=progress)
        feats.save(out)
    stats = feats.stats
    typer.echo(
        f"embedded {len(feats)} images ({feats.dim} dims) to {out}; skipped {len(feats.skipped)}; "
        f"cache hits {stats.get('cache_hits', 0)} of {stats.get('images', len(feats))}"
    )
