"""``cliplab adapt --methods ipclip``: a non-transferable prompt (IP-CLIP) from labelled domains.

Called from ``cliplab adapt`` when ``--methods ipclip``: ``--train`` is the authorised domain,
each ``--unauthorised`` source one unauthorised domain (both labelled with the same classes). A
stratified ``--test-fraction`` of every domain is held out (``--test`` replaces the authorised
hold-out); zero-shot is scored on the same images as the unprotected baseline. Writes
``results.json``; ``--export FILE`` saves the trained prompt for ``cliplab.adapt.load``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from cliplab.cli.common import EmbeddingOptions
from cliplab.errors import InputError


def labelled_images(spec: str, option: str) -> tuple[list, np.ndarray]:
    """Decoded images and labels of a labelled source (a class-per-subfolder folder, a manifest, shards)."""
    from cliplab.data.images import decode_image
    from cliplab.data.sources import open_source

    items = open_source(spec).items
    if not items:
        raise InputError(f"{option} {spec}: no images found")
    if any(item.label is None for item in items):
        raise InputError(f"{option} {spec}: every image needs a label (one subfolder per class, or a manifest with labels)")
    return [decode_image(item.read_bytes(), item.id) for item in items], np.array([item.label for item in items], dtype=str)


def run_ip_clip(train: str, unauthorised: list[str], test: str | None, test_fraction: float, out: Path, epochs: int | None,
                seed: int, export: Path | None, options: EmbeddingOptions) -> None:  # fmt: skip
    """Fit :class:`cliplab.adapt.NonTransferablePrompt` on ``train`` (authorised) against the
    ``unauthorised`` sources, score it and zero-shot on every domain's test images, write ``out``."""
    from cliplab.adapt import (
        NonTransferablePrompt,
        domain_features,
        nontransfer_metrics,
    )
    from cliplab.adapt.nontransferable import DomainFeatures
    from cliplab.data.few_shot import stratified_split
    from cliplab.files import atomic_folder, write_json
    from cliplab.zeroshot import ZeroShotClassifier

    if not unauthorised:
        raise InputError("--methods ipclip needs at least one --unauthorised SRC (labelled images of a domain the prompt must fail on)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty; choose a new output folder")
    domains = {"authorised": labelled_images(train, "--train")}
    for i, spec in enumerate(unauthorised, 1):
        domains[f"unauthorised_{i}"] = labelled_images(spec, "--unauthorised")
    classes = np.unique(domains["authorised"][1])
    for name, (_, y) in domains.items():
        unknown = sorted(set(y.tolist()) - set(classes.tolist()))
        if unknown:
            raise InputError(f"{name} has classes --train lacks: {', '.join(unknown[:5])}")
    given_test = labelled_images(test, "--test") if test is not None else None
    clip, _ = options.prepare()
    fit, held = {}, {}
    for name, (images, y) in domains.items():
        feats = domain_features(clip, images)
        if name == "authorised" and given_test is not None:
            fit[name], held[name] = (feats, y), (domain_features(clip, given_test[0]), given_test[1])
            continue
        rows, test_rows = stratified_split(y, test_fraction, seed, "--test-fraction", keep_one=True)
        fit[name], held[name] = (feats.take(rows), y[rows]), (feats.take(test_rows), y[test_rows])
    others = [n for n in domains if n != "authorised"]
    names = {c: c.replace("_", " ") for c in classes.tolist()}  # folder names such as top_left
    kw = {"epochs": epochs} if epochs is not None else {}
    head = NonTransferablePrompt(clip, classnames=names, random_state=seed, **kw).fit(
        *fit["authorised"], DomainFeatures.concat([fit[n][0] for n in others]), np.concatenate([fit[n][1] for n in others]))
    zero_shot = ZeroShotClassifier(clip, [names[c] for c in classes.tolist()]).fit()
    acc = {n: float(head.score(*held[n])) for n in domains}
    zs = {n: float(np.mean(classes[zero_shot.class_scores(held[n][0].embeddings).argmax(1)] == held[n][1])) for n in domains}
    metrics = nontransfer_metrics(acc["authorised"], {n: acc[n] for n in others}, len(classes), zs["authorised"], {n: zs[n] for n in others})
    result = {"model": clip.name, "method": "ipclip", "classes": classes.tolist(), "authorised": train,
              "unauthorised": dict(zip(others, unauthorised)), "n_train": {n: len(fit[n][1]) for n in domains},
              "n_test": {n: len(held[n][1]) for n in domains}, "accuracy": acc, "zeroshot_accuracy": zs,
              "metrics": metrics, "best_epoch": head.best_epoch_, "epochs_run": head.epochs_run_,
              "export": str(export) if export is not None else None}  # fmt: skip
    if export is not None:
        head.save(export)
    with atomic_folder(out) as tmp:
        write_json(result, tmp / "results.json")
    for n in domains:
        source = train if n == "authorised" else result["unauthorised"][n]
        typer.echo(f"{n} ({source}): ipclip {100 * acc[n]:.1f}%, zero-shot {100 * zs[n]:.1f}% on {len(held[n][1])} held-out images")
    typer.echo(f"chance {100 * metrics['chance']:.1f}%; unauthorised mean {100 * metrics['acc_unauth_mean']:.1f}%")
    typer.echo(f"wrote {out / 'results.json'}" + (f" and {export}" if export is not None else ""))
