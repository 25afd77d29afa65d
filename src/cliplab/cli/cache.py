"""``cliplab cache info`` / ``cliplab cache clear``: the embedding cache folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from cliplab.cli import app
from cliplab.cli.common import OutJsonOption, user_errors
from cliplab.files import write_json

cache_app = typer.Typer(help="The embedding cache: images embedded before by the same model are not computed again.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

CacheRootOption = Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache folder (default: $XDG_CACHE_HOME/cliplab/embeddings, else ~/.cache/cliplab/embeddings).")]


def _root(cache_dir: Path | None) -> Path:
    from cliplab.features.cache_folder import default_cache_dir

    return cache_dir if cache_dir is not None else default_cache_dir()


def human_size(n: int) -> str:
    """Bytes in the largest unit that keeps the number >= 1: '512 B', '3.4 MiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@cache_app.command("info")
def info_command(cache_dir: CacheRootOption = None, out: OutJsonOption = None) -> None:
    """Show where the cache is, its size, and the models (with precision) it holds embeddings for."""
    from cliplab.features.cache_folder import namespaces

    with user_errors():
        root = _root(cache_dir)
        spaces = namespaces(root)
        total = sum(ns.bytes for ns in spaces)
        if out is not None:
            write_json(
                {
                    "folder": str(root),
                    "bytes": total,
                    "models": [
                        {"model": ns.model, "precision": ns.precision, "embeddings": ns.rows, "chunks": ns.chunks,
                         "bytes": ns.bytes, "folder": str(ns.folder), "description": ns.description}
                        for ns in spaces
                    ],
                },
                out,
            )  # fmt: skip
    typer.echo(f"cache folder: {root}")
    typer.echo(f"size: {human_size(total)} in {len(spaces)} model folder(s)")
    if spaces:
        table = Table()
        for column in ("model", "precision", "embeddings", "size"):
            table.add_column(column, justify="right" if column in ("embeddings", "size") else "left")
        for ns in spaces:
            table.add_row(ns.model, ns.precision, str(ns.rows), human_size(ns.bytes))
        Console().print(table)


@cache_app.command("clear")
def clear_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only this model's embeddings (a spec, e.g. openclip:ViT-B-32 or tiny); all precisions."),
    cache_dir: CacheRootOption = None,
) -> None:
    """Delete cached embeddings: all of them, or one model's. Folders the cache did not make are left alone."""
    from cliplab.features.cache_folder import clear

    with user_errors():
        root = _root(cache_dir)
        gone, kept = clear(root, model)
    for line in kept:
        typer.echo(line, err=True)
    freed = human_size(sum(ns.bytes for ns in gone))
    what = f"model {model}" if model else "all models"
    typer.echo(f"removed {len(gone)} model folder(s) ({freed}) for {what} from {root}")
