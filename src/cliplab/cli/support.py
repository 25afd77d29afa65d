"""``cliplab support build``: a support set from class prompts alone (retrieval, generation) -> a saved head."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    BatchSizeOption,
    CacheDirOption,
    ClassnamesOption,
    DecodeOption,
    EmbeddingOptions,
    ModelOption,
    NoCacheOption,
    OutJsonOption,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    WorkersOption,
    read_names,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError

support_app = typer.Typer(help="Support sets built without labels (SuS-X, CapS-Adapter) for the support-set adapter.", no_args_is_help=True)
app.add_typer(support_app, name="support")


@support_app.command("build")
def build_command(
    head: Path = typer.Option(..., "--head", help="File to save the fitted SupportSetAdapter to, for cliplab classify --head."),
    classnames: ClassnamesOption = None,
    templates: str = typer.Option("default", "--templates", help="Prompts: default | openai_imagenet | tip_adapter, one template with {c} ('a shape {c}'), or a .txt/.json file (.json: class -> prompts). Zero-shot and the support set read the same prompts."),
    retrieve: Optional[str] = typer.Option(None, "--retrieve", help="Unlabelled pool to retrieve from by class text: an index folder from cliplab index build, or images (folder, manifest, shards, synthetic:<n>)."),
    k: int = typer.Option(16, "--k", min=1, help="Images retrieved per class."),
    generate: Optional[str] = typer.Option(None, "--generate", help="Generator: scene (the synthetic renderer; prompts name scene attributes) or the local folder of a diffusers text-to-image pipeline (needs diffusers installed)."),
    n_per_class: int = typer.Option(16, "--n-per-class", min=1, help="Images generated per class."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator and of the adapter's validation carve."),
    test: Optional[str] = typer.Option(None, "--test", help="Labelled images to report zero-shot and support-set accuracy on (used for nothing else)."),
    out: OutJsonOption = None,
    model: ModelOption = DEFAULT_MODEL,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    batch_size: BatchSizeOption = None,
    decode: DecodeOption = "auto",
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    workers: WorkersOption = None,
    progress: ProgressOption = True,
) -> None:
    """Build a support set from class prompts with zero labelled images and fit the support-set adapter (TIP-X) on it.

    Sources: --retrieve takes each class's k nearest images of an unlabelled pool (SuS-X's LAION retrieval), --generate draws n images per class prompt (SuS-X's Stable Diffusion); give one or both. The adapter's alpha, beta and gamma are searched on a quarter of the support set, whose labels are the prompts that made it. With --test, prints zero-shot and support-set accuracy on those labelled images.
    """
    from cliplab.adapt.support_sets import (
        GenerationSource,
        RetrievalSource,
        open_generator,
        support_set_adapter,
    )
    from cliplab.data.sources import open_source
    from cliplab.features import embed
    from cliplab.files import write_json
    from cliplab.zeroshot.templates import build_prompts

    with user_errors(), warnings_as_lines():
        if retrieve is None and generate is None:
            raise InputError("pass --retrieve SRC, --generate scene|DIR or both: the support set needs a source")
        if classnames is None:
            raise InputError("pass --classnames: the support set is built from the class prompts")
        names = read_names(classnames, "--classnames")
        prompts = dict(zip(names, build_prompts(names, templates)))
        options = EmbeddingOptions(model, pretrained, precision, decode, cache_dir, no_cache, batch_size, workers, progress)
        test_source = open_source(test) if test is not None else None
        clip, kw = options.prepare()
        sources = []
        if retrieve is not None:
            sources.append(RetrievalSource(retrieve, k=k, embed_options=kw))
        if generate is not None:
            sources.append(GenerationSource(open_generator(generate, seed, device=str(clip.device)), n_per_class=n_per_class))
        fitted, support = support_set_adapter(clip, prompts, sources, random_state=seed)
        fitted.save(head)
        report = {"model": clip.name, "classes": names, "support": {"per_class": support.counts(), "retrieved": support.sources.count("retrieval"),
                  "generated": support.sources.count("generation")},
                  "hyperparameters": {p: getattr(fitted, f"{p}_") for p in ("alpha", "beta", "gamma", "delta")}, "head": str(head)}  # fmt: skip
        if test_source is not None:
            feats = embed(clip, test_source, **kw).labelled()
            if not len(feats):
                raise InputError(f"--test {test} has no labelled images; pass a class-per-subfolder folder or a manifest with labels")
            y = np.array(feats.labels, dtype=str)
            unknown = sorted(set(y.tolist()) - set(names))
            if unknown:
                raise InputError(f"--test has classes not in --classnames: {', '.join(unknown[:5])}")
            zero_shot = float((fitted.classes_[(feats.X @ fitted.text_weights_.T).argmax(1)] == y).mean())
            report["test"] = {"images": len(y), "zero_shot": zero_shot, "support": float(fitted.score(feats.X, y))}
        if out is not None:
            write_json(report, out)
    per_class = ", ".join(f"{c} {n}" for c, n in report["support"]["per_class"].items())
    typer.echo(f"support set: {len(support)} images ({per_class}); alpha {fitted.alpha_:g}, beta {fitted.beta_:g}, gamma {fitted.gamma_:g}")
    if "test" in report:
        t = report["test"]
        typer.echo(f"test ({t['images']} images): zero-shot {t['zero_shot']:.3f}, support set {t['support']:.3f} ({100 * (t['support'] - t['zero_shot']):+.1f} points)")
    typer.echo(f"wrote {head}" + (f" and {out}" if out is not None else ""))
