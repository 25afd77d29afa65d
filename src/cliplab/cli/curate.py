"""``cliplab curate``: MetaCLIP curation of a captioned manifest (substring matching + balancing)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import typer

from cliplab.cli import app
from cliplab.cli.common import user_errors, warnings_as_lines
from cliplab.errors import InputError


def read_rows(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a JSONL/CSV/TSV manifest and the fieldnames (CSV) or [] (JSONL)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n} is not valid JSON: {exc.msg}") from exc
        return rows, []
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    return list(reader), list(reader.fieldnames or [])


def write_rows(rows: list[dict], fieldnames: list[str], path: Path) -> None:
    """Rows as JSONL, or as CSV/TSV with ``fieldnames`` and then every other key the rows hold
    (JSONL rows need not share keys); list and mapping values become JSON text in a CSV cell."""
    from cliplab.files import atomic_write

    if path.suffix.lower() == ".jsonl":
        atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return
    columns = list(dict.fromkeys([*fieldnames, *(k for r in rows for k in r)]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    writer.writeheader()
    writer.writerows({k: cell(v) for k, v in r.items()} for r in rows)
    atomic_write(path, buf.getvalue())


def cell(value: object) -> object:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


def caption_of(row: dict, column: str) -> str:
    value = row.get(column)
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return "" if value is None else str(value)


@app.command("curate")
def curate_command(
    manifest: Path = typer.Argument(..., help="A .jsonl, .csv or .tsv manifest with a caption column."),
    metadata: Path = typer.Option(..., "--metadata", help="Text file of metadata entries, one per line (matched case-sensitively)."),
    t: int = typer.Option(20000, "--t", min=1, help="Balancing threshold: entries matched by more texts are sampled down to about t."),
    out: Path = typer.Option(..., "--out", "-o", help="Curated manifest to write (same format as the input; kept rows unchanged)."),
    caption_col: str = typer.Option("caption", "--caption-col", help="Manifest column holding the caption."),
    seed: int = typer.Option(0, "--seed", help="Seed of the balancing trials."),
    dedup_features: Path | None = typer.Option(None, "--dedup-features", help="Feature folder (cliplab embed) of the manifest's images: also drop near-duplicate images."),
    dedup_threshold: float = typer.Option(0.95, "--dedup-threshold", help="Cosine similarity at which two images count as duplicates (1.0: exact only)."),
) -> None:
    """Curate image-text pairs the MetaCLIP way: keep texts that name metadata entries, balanced so
    no entry dominates (head entries sampled down to t, tail entries kept). Writes the curated
    manifest, OUT.report.json (head/tail figures before and after) and OUT.report.png (the plot)."""
    from cliplab.files import atomic_write, write_json
    from cliplab.train.curation import curate, distribution_png, near_duplicates

    with user_errors(), warnings_as_lines():
        entries = [line.strip() for line in metadata.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not entries:
            raise InputError(f"{metadata} holds no metadata entries; write one entry per line")
        rows, fields = read_rows(manifest)
        if rows and caption_col not in rows[0]:
            raise InputError(f"{manifest} has no {caption_col!r} column; name it with --caption-col")
        result = curate([caption_of(r, caption_col) for r in rows], entries, t, seed)
        keep = result.keep
        summary = result.summary(entries)
        if dedup_features is not None:
            keep, summary["near_duplicates_dropped"] = _dedup(rows, keep, manifest, dedup_features, dedup_threshold, near_duplicates)
            summary["kept"] = int(keep.sum())  # the rows written
        write_rows([r for r, k in zip(rows, keep) if k], fields, out)
        write_json(summary, out.with_suffix(".report.json"))
        atomic_write(out.with_suffix(".report.png"), distribution_png(result))
    typer.echo(f"kept {int(keep.sum())} of {len(rows)} rows ({summary['before']['head_entries']} head entries before, "
               f"{summary['after']['head_entries']} after); wrote {out}")  # fmt: skip


def _dedup(rows, keep, manifest, features_dir, threshold, near_duplicates):
    """Drop kept rows whose image embedding nearly duplicates an earlier kept row's (rows are
    matched to embeddings by image path, as the feature store names manifest images)."""
    import os

    import numpy as np

    from cliplab.features import Features

    feats = Features.load(features_dir)
    index = {str(i): k for k, i in enumerate(feats.ids)}
    paths = [os.path.normpath(manifest.parent / str(r.get("image", r.get("filepath", "")))) for r in rows]
    names = [index.get(p) for p in paths]
    kept_rows = [i for i, k in enumerate(keep) if k and names[i] is not None]
    mask = near_duplicates(feats.X[[names[i] for i in kept_rows]], threshold)
    new_keep = keep.copy()
    new_keep[[i for i, m in zip(kept_rows, mask) if not m]] = False
    return new_keep, int(np.sum(~mask))
