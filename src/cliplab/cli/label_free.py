"""``cliplab adapt --methods nola``: label-free adaptation (NoLA) on an unlabelled folder.

Called from ``cliplab adapt`` when ``--methods nola``; ``--train`` is then read without labels
(labels a source names are used only to report each stage's accuracy), ``--classnames`` names the
classes. Writes ``results.json`` (settings, stage accuracies) and ``predictions.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from cliplab.cli.common import EmbeddingOptions, read_names
from cliplab.errors import InputError


@dataclass(frozen=True)
class SslFeatures:
    """What the labelling network reads: ``model``'s image embedding (None: the CLIP model's), or with
    ``layers`` its blocks' ``tokens`` (:meth:`cliplab.models.base.Model.multilevel`)."""

    model: str | None = None
    layers: str | None = None
    tokens: str | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and self.layers is None:
            raise InputError("--ssl-tokens applies with --ssl-layers (the blocks whose tokens are read); add e.g. --ssl-layers -1")

    def load(self, clip):
        """The encoder for :class:`cliplab.adapt.LabelFree`'s ``ssl_model`` (None: ``clip`` itself)."""
        from cliplab.models import load_model

        encoder = load_model(self.model, device=clip.device) if self.model else None
        if self.layers is None:
            return encoder
        return (encoder or clip).multilevel(self.layers, tokens=self.tokens or "grid8")


def run_label_free(train: str, out: Path, classnames: str | None, templates: str, descriptors: Path | None, ssl: SslFeatures,
                   epochs: int | None, options: EmbeddingOptions) -> None:  # fmt: skip
    """Fit :class:`cliplab.adapt.LabelFree` on the images of ``train`` and write the results to ``out``."""
    from cliplab.adapt import LabelFree
    from cliplab.data.images import decode_image
    from cliplab.data.sources import open_source
    from cliplab.files import atomic_folder, atomic_write, write_json

    if classnames is None:
        raise InputError("--methods nola needs --classnames (the classes to adapt to: 'a,b,c' or a file with one per line)")
    names = read_names(classnames, "--classnames")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty; choose a new output folder")
    if descriptors is not None and not descriptors.is_file():
        raise InputError(f"--descriptors file not found: {descriptors}")
    items = open_source(train).items
    if not items:
        raise InputError(f"--train {train}: no images found")
    images = [decode_image(item.read_bytes(), item.id) for item in items]
    labels = [item.label for item in items]
    known = all(label is not None and label.replace("_", " ") in names for label in labels)
    y_eval = [label.replace("_", " ") for label in labels] if known else None  # folder names such as top_left
    clip, _ = options.prepare()
    ssl = ssl.load(clip)
    kw = {"epochs": epochs} if epochs is not None else {}
    head = LabelFree(clip, names, templates=templates, descriptors=descriptors, ssl_model=ssl, **kw).fit(images, y_eval=y_eval)
    proba = head.predict_proba(images)
    best = proba.argmax(1)
    lines = ["id,prediction,probability"] + [f"{_csv(item.id)},{_csv(names[b])},{p[b]:.6f}" for item, b, p in zip(items, best, proba)]
    result = {"model": clip.name, "ssl_model": ssl.name if ssl is not None else clip.name, "method": "nola", "classes": names,
              "n_images": len(items), "k": head.k_, "confident_set_size": len(head.confident_rows_),
              "stage_accuracy": head.stage_accuracy_}  # fmt: skip
    with atomic_folder(out) as tmp:
        write_json(result, tmp / "results.json")
        atomic_write(tmp / "predictions.csv", ("\n".join(lines) + "\n").encode("utf-8"))
    typer.echo(f"nola: {len(items)} unlabelled images, {len(names)} classes, confident set {len(head.confident_rows_)} (k = {head.k_})")
    if head.stage_accuracy_:
        shown = {k: v for k, v in head.stage_accuracy_.items() if k != "confident_set_size"}
        typer.echo("accuracy against the source's labels (never used to fit): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in shown.items()))
    typer.echo(f"wrote {out / 'results.json'} and {out / 'predictions.csv'}")


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
