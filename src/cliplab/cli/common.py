"""What every command shares: clean one-line failures, JSON output, the model option."""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import typer

from cliplab.models import DEFAULT_MODEL, ModelLoadError

MODEL_OPTION = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model spec: cliplab:shapes-tiny | openclip:<arch> | hf:<repo or dir>.")
PRETRAINED_OPTION = typer.Option(None, "--pretrained", "-p", help="open_clip tag, local checkpoint file, or hf-hub:org/name.")
# Options of the commands that embed a collection (embed, classify, eval).
IMAGES_OPTION = typer.Option(..., "--images", "-i", help="Images: a folder, a .csv/.jsonl manifest, .tar shards, or synthetic:<n>[:seed].")
BATCH_SIZE_OPTION = typer.Option(64, "--batch-size", "-b", min=1, help="Images per forward pass.")
CACHE_DIR_OPTION = typer.Option(None, "--cache-dir", help="Folder of the embedding cache: images embedded before by the same model are not computed again.")
WORKERS_OPTION = typer.Option(None, "--workers", min=0, help="Image decoding processes (0: decode in this process; default: chosen from the device and cores).")
PROGRESS_OPTION = typer.Option(True, "--progress/--no-progress", help="Show a progress bar while embedding.")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures (bad input, missing files) into one line on stderr and exit 2."""
    try:
        yield
    except (ValueError, FileNotFoundError, KeyError, OSError, ModelLoadError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Print each Python warning raised inside as one 'warning: ...' line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            yield
        finally:
            for w in caught:
                typer.echo(f"warning: {w.message}", err=True)


def read_names(value: str, option: str) -> list[str]:
    """Names from an option value: an existing file (one name per line) or a comma-separated list."""
    path = Path(value)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    elif "," not in value and path.suffix.lower() in (".txt", ".csv", ".lst"):
        raise FileNotFoundError(f"{option} file not found: {value}")
    else:
        names = [part.strip() for part in value.split(",")]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{option} names no classes; pass 'a,b,c' or a file with one name per line")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{option} repeats {', '.join(repr(d) for d in dup[:3])}; class names must be unique")
    return names


def write_json(data: Any, path: Path) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def is_interactive() -> bool:
    return sys.stderr.isatty()
