"""``cliplab eval TASK``: zero-shot classification and retrieval (CLIP_benchmark-style) and the tasks
beyond accuracy, one sub-command each; JSON results and an HTML report.

The sub-commands are the task registry: each ``@task`` function declares its own options in its
signature and names the option groups it shares (``IMAGES``, ``LABELS``, ``MANIFEST``); every one
also takes ``SHARED`` (model, precision, embedding, outputs).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer._click import Context
from typer._click.exceptions import NoSuchOption, UsageError  # typer vendors click (typer/core.py: "from . import _click")
from typer.core import TyperCommand, TyperGroup

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    BatchSizeOption,
    CacheDirOption,
    CaptionColOption,
    Decode,
    DecodeOption,
    ImageColOption,
    ImagesOption,
    LabelColOption,
    LangColOption,
    LanguageOption,
    MaskPromptOption,
    ModelOption,
    NoCacheOption,
    OnConflict,
    OnConflictOption,
    Precision,
    PrecisionOption,
    PretrainedOption,
    ProgressOption,
    ReportOption,
    ResultsOption,
    SamKind,
    SamKindOption,
    SamWeightsOption,
    WorkersOption,
    cache_folder,
    check_language,
    load_mask_prompt,
    load_model_for,
    open_images,
    read_names,
    sam_proposer,
    say_what_was_left_out,
    user_errors,
    warnings_as_lines,
)
from cliplab.errors import InputError
from cliplab.files import write_json

if TYPE_CHECKING:  # the task modules load when their sub-command runs
    from cliplab.evaluate.tasks import EmbedOptions


class Attribute(str, Enum):
    shape = "shape"
    color = "color"
    size = "size"
    position = "position"
    background = "background"


# --- the command line: `--task NAME` as a sub-command, usage errors in one line -------------------
TASK_FLAGS = ("--task", "-t")


def task_first(args: list[str]) -> list[str]:
    """CLIP_benchmark's spelling ``--task NAME`` (anywhere) -> ``NAME`` first; options without a task -> ``auto``."""
    for i, arg in enumerate(args):
        if arg in TASK_FLAGS and i + 1 < len(args):
            return [args[i + 1], *args[:i], *args[i + 2 :]]
        if arg.startswith("--task="):
            return [arg.partition("=")[2], *args[:i], *args[i + 1 :]]
    if args and args[0].startswith("-") and args[0] != "--help":
        return ["auto", *args]
    return args


class EvalGroup(TyperGroup):
    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, task_first(args))

    def resolve_command(self, ctx: Context, args: list[str]) -> Any:
        """The task's sub-command; an unknown task is one line that names the tasks."""
        with user_errors():
            try:
                return super().resolve_command(ctx, args)
            except UsageError as exc:
                message = exc.format_message().replace("No such command", "no such task")
                raise InputError(f"{message} (tasks: {', '.join(self.commands)})") from exc


class TaskCommand(TyperCommand):
    """A task's sub-command: an unknown, missing or bad option is one line that says what to do."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        with user_errors():
            try:
                return super().parse_args(ctx, args)
            except NoSuchOption as exc:
                raise InputError(self._stray(ctx, exc.option_name)) from exc
            except UsageError as exc:
                raise InputError(f"{exc.format_message().rstrip('.')}; see cliplab eval {self.name} --help") from exc

    def _stray(self, ctx: Context, flag: str) -> str:
        group = ctx.parent.command if ctx.parent is not None else None
        commands = getattr(group, "commands", {})
        owners = [name for name, cmd in commands.items() if any(flag in p.opts + p.secondary_opts for p in cmd.params)]
        if owners:
            return f"{flag} applies to --task {', '.join(owners)}, not to {self.name}"
        return f"no such option {flag} for cliplab eval {self.name}; see cliplab eval {self.name} --help"


eval_app = typer.Typer(
    cls=EvalGroup,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Evaluate a model on a task; write CLIP_benchmark-style JSON (--out) and an HTML report (--report).\n\n"
    "cliplab eval TASK --images SRC --out results.json; 'cliplab eval --task TASK ...' (CLIP_benchmark's spelling) "
    "is the same command, and options without a task mean the task auto. See 'cliplab eval TASK --help' for a task's options.",
)
app.add_typer(eval_app, name="eval")


# --- options shared between tasks, declared once ----------------------------------------------------
def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


SHARED = [
    _param("out", ResultsOption, ...),
    _param("report", ReportOption, None),
    _param("model", ModelOption, DEFAULT_MODEL),
    _param("pretrained", PretrainedOption, None),
    _param("precision", PrecisionOption, DEFAULT_PRECISION),
    _param("batch_size", BatchSizeOption, None),
    _param("progress", ProgressOption, True),
]
# the feature store's options, for the tasks that embed a collection through it
EMBEDDING = [
    _param("decode", DecodeOption, "auto"),
    _param("cache_dir", CacheDirOption, None),
    _param("no_cache", NoCacheOption, False),
    _param("workers", WorkersOption, None),
]
IMAGES = [_param("images", ImagesOption, ...)]
TemplatesOption = Annotated[Optional[str], typer.Option("--templates", help="Prompt templates: default, openai_imagenet, tip_adapter, or a .txt/.json file. Default: default (synthetic scenes: the attribute's own prompt).")]
LABELS = [
    _param("classnames", Annotated[Optional[str], typer.Option("--classnames", help="Class names 'a,b,c' or a file with one per line: the label vocabulary, or new names for the dataset's classes in order.")], None),
    _param("templates", TemplatesOption, None),
    _param("attribute", Annotated[Optional[Attribute], typer.Option("--attribute", help="Synthetic scenes only: the attribute of single-object scenes to classify (default shape).")], None),
]
MANIFEST = [
    _param("image_col", ImageColOption, None),
    _param("caption_col", CaptionColOption, None),
    _param("label_col", LabelColOption, None),
    _param("on_conflict", OnConflictOption, OnConflict.error),
]
# the language of the texts: synthetic scenes' captions and prompts, or a manifest's captions
LANGUAGE = [_param("language", LanguageOption, None), _param("lang_col", LangColOption, None)]
RecallKOption = Annotated[Optional[list[str]], typer.Option("--recall-k", "-k", help="Retrieval: k values, as '--recall-k 1 5 10' or '1,5,10' (default 1 5 10).")]
SEED_HELP = "Seed of the task's randomness."


@dataclass
class Run:
    """The options of one ``cliplab eval`` run beyond the task's own; groups a task does not take stay None."""

    out: Path
    report: Path | None
    model: str
    pretrained: str | None
    precision: Precision
    batch_size: int | None
    progress: bool
    decode: Decode = Decode.auto
    cache_dir: Path | None = None
    no_cache: bool = False
    workers: int | None = None
    images: str | None = None
    classnames: str | None = None
    templates: str | None = None
    attribute: Attribute | None = None
    image_col: str | None = None
    caption_col: str | None = None
    label_col: str | None = None
    on_conflict: OnConflict = OnConflict.error
    language: str | None = None
    lang_col: str | None = None

    def embed_options(self) -> EmbedOptions:
        from cliplab.evaluate.tasks import EmbedOptions

        cache = cache_folder(self.cache_dir, self.no_cache)
        return EmbedOptions(self.batch_size, cache, self.workers, self.progress, self.decode.value)

    def names(self) -> list[str] | None:
        return read_names(self.classnames, "--classnames") if self.classnames else None

    def labels(self) -> dict[str, Any]:
        """The label options as the labelled tasks' runners take them."""
        return dict(classnames=self.names(), templates=self.templates, attribute=self.attribute.value if self.attribute else None)

    def manifest(self) -> dict[str, Any]:
        given = dict(image_col=self.image_col, caption_col=self.caption_col, label_col=self.label_col, on_conflict=self.on_conflict)
        if self.lang_col is not None:
            given["lang_col"] = self.lang_col
        if check_language(self.language) is not None:
            given["language"] = self.language
        return given

    def clip(self):
        return load_model_for(self.model, self.pretrained, self.precision, announce=self.progress)


Outcome = tuple[Any, Callable[[], Any]]  # (result with to_json(), a function making its Report)


def task(name: str, *groups: list[inspect.Parameter], extra_args: bool = False, embeds: bool = True) -> Callable:
    """Register ``func(run, **own options) -> (result, make_report)`` as ``cliplab eval NAME``, with the
    options of ``groups``, ``SHARED`` and, for a task that ``embeds`` a collection through the feature store,
    ``EMBEDDING``; the command writes the JSON and report and prints the table."""

    def register(func: Callable[..., Outcome]) -> Callable[..., Outcome]:
        grouped = [p for group in (*groups, EMBEDDING if embeds else []) for p in group]
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]

        def command(**kw: Any) -> None:
            run = Run(**{p.name: kw.pop(p.name) for p in [*grouped, *SHARED]})
            with user_errors(), warnings_as_lines():
                result, make_report = func(run, **kw)
                write_json(result.to_json(), run.out)
                if run.report is not None:
                    make_report().save(run.report)
            print_result(result)
            typer.echo(f"wrote {run.out}" + (f" and {run.report}" if run.report is not None else ""))

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in [*grouped, *own, *SHARED]]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        settings = {"allow_extra_args": True} if extra_args else {}
        eval_app.command(name, cls=TaskCommand, help=inspect.getdoc(func), context_settings=settings)(command)
        return func

    return register


# --- zero-shot classification and retrieval -----------------------------------------------------------
def parse_recall_k(values: list[str] | None, extra: list[str]) -> tuple[int, ...]:
    """``--recall-k 1 5 10``, ``--recall-k 1,5,10`` or a repeated option -> (1, 5, 10); default (1, 5, 10)."""
    if extra and not values:
        raise InputError(f"unexpected argument {extra[0]!r}")
    raw = [part for v in [*(values or []), *extra] for part in v.replace(",", " ").split()]
    if not raw:
        return (1, 5, 10)
    try:
        ks = [int(x) for x in raw]
    except ValueError as exc:
        bad = next(x for x in raw if not x.lstrip("-").isdigit())
        raise InputError(f"--recall-k takes integers (e.g. 1 5 10), got {bad!r}") from exc
    if any(k < 1 for k in ks):
        raise InputError(f"--recall-k values must be >= 1, got {min(ks)}")
    return tuple(sorted(set(ks)))


def pick_task(task: str, source, classnames) -> str:
    """``auto``: classification when the dataset has classes (or class names are given), else retrieval."""
    if task != "auto":
        return task
    if source.classes or classnames:
        return "zeroshot_classification"
    if any(it.captions for it in source.items):
        return "zeroshot_retrieval"
    raise InputError(f"dataset {source.name!r} has neither labels nor captions; nothing to evaluate")


def open_eval_source(run: Run, task: str):
    """The dataset to evaluate. Synthetic scenes are labelled by ``--attribute`` (default shape)
    unless the task is retrieval; ``--attribute`` on anything else is an error."""
    from cliplab.data.sources import MANIFEST_EXTENSIONS
    from cliplab.evaluate.runner import is_synthetic, open_dataset

    language = check_language(run.language)
    if is_synthetic(run.images):
        if run.lang_col is not None:
            raise InputError(f"--lang-col applies to manifests (.csv/.tsv/.jsonl) only, not to --images {run.images}")
        lang = {"language": language} if language else {}
        if task != "zeroshot_retrieval":
            return open_dataset(run.images, attribute=(run.attribute or Attribute.shape).value, **lang)
        return open_dataset(run.images, **lang)
    if run.attribute is not None:
        raise InputError(f"--attribute applies to synthetic scenes (--images synthetic:N) only, not to {run.images}")
    if language is not None and Path(run.images).suffix.lower() not in MANIFEST_EXTENSIONS:
        raise InputError(f"--language applies to synthetic scenes and manifests (with a language column), not to --images {run.images}")
    return open_images(run.images, **run.manifest())


def zeroshot(run: Run, task: str, recall_k: list[str] | None = None, extra: list[str] | None = None) -> Outcome:
    """Zero-shot classification or retrieval (``auto`` picks by the data)."""
    from cliplab.evaluate.eval_report import eval_report
    from cliplab.evaluate.runner import run_zeroshot_classification, run_zeroshot_retrieval

    ks = parse_recall_k(recall_k, list(extra or []))
    names = run.names()
    source = open_eval_source(run, task)
    which = pick_task(task, source, names)
    if which == "zeroshot_retrieval" and (run.templates or names):
        raise InputError(f"{'--templates' if run.templates else '--classnames'} applies to classification, not to retrieval")
    if which == "zeroshot_classification" and recall_k:
        raise InputError("--recall-k applies to retrieval, not to classification")
    clip, common = run.clip(), dict(opts=run.embed_options(), dataset=run.images, pretrained=run.pretrained)
    if which == "zeroshot_classification":
        templates = run.templates
        if templates is None and run.language is not None and not source.templates:  # a dataset's class names, prompted in the language
            from cliplab.zeroshot.templates import language_templates

            templates = language_templates(run.language)
        result = run_zeroshot_classification(clip, source, templates=templates, classnames=names, **common)
    else:
        result = run_zeroshot_retrieval(clip, source, ks=ks, **common)
    say_what_was_left_out(result.details.features, run.out)
    return result, lambda: eval_report(result)


@task("auto", IMAGES, LABELS, MANIFEST, LANGUAGE, extra_args=True)
def auto(run: Run, ctx: typer.Context, recall_k: RecallKOption = None) -> Outcome:
    """Zero-shot classification when the dataset has labels (or --classnames are given), else retrieval over its captions."""
    return zeroshot(run, "auto", recall_k, ctx.args)


@task("zeroshot_classification", IMAGES, LABELS, MANIFEST, LANGUAGE)
def zeroshot_classification(run: Run) -> Outcome:
    """Zero-shot classification: acc1, acc5, mean per-class recall; confusion matrix in the report."""
    return zeroshot(run, "zeroshot_classification")


@task("zeroshot_retrieval", IMAGES, MANIFEST, LANGUAGE, extra_args=True)
def zeroshot_retrieval(run: Run, ctx: typer.Context, recall_k: RecallKOption = None) -> Outcome:
    """Zero-shot image and text retrieval over every caption of every image: recall@k both ways."""
    return zeroshot(run, "zeroshot_retrieval", recall_k, ctx.args)


@task("retrieval", IMAGES, MANIFEST, LANGUAGE, extra_args=True)
def retrieval(run: Run, ctx: typer.Context, recall_k: RecallKOption = None) -> Outcome:
    """Image and text retrieval in any language (--language): recall@k both ways; on synthetic scenes in a language
    other than English also cross-lingual text->text recall@k (each caption finds the English caption of its scene)."""
    return zeroshot(run, "zeroshot_retrieval", recall_k, ctx.args)


# --- the tasks beyond accuracy (cliplab.evaluate.tasks) -------------------------------------------------
def _int_list(value: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in value.replace(",", " ").split()]
    except ValueError as exc:
        raise InputError(f"{flag} takes integers like 1,3,5, got {value!r}") from exc


@contextmanager
def _steps(enabled: bool) -> Iterator[Any]:
    """An ``on_step(text)`` callback that shows the current step as a spinner on stderr."""
    if not enabled:
        yield None
        return
    with Console(stderr=True).status("starting") as status:
        yield lambda text: status.update(text)


@task("robustness", IMAGES, LABELS)
def robustness(
    run: Run,
    corruptions: Optional[str] = typer.Option(None, "--corruptions", help="ImageNet-C corruptions, e.g. gaussian_noise,motion_blur (default: 11 of them)."),
    severities: Optional[str] = typer.Option(None, "--severities", help="Severities among 1-5, e.g. 1,3,5 (default: all five)."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> Outcome:
    """Zero-shot accuracy under ImageNet-C corruptions at each severity; corruption errors against the clean error."""
    from cliplab.evaluate.tasks import robustness as module

    kw: dict[str, Any] = {} if corruptions is None else {"corruptions": [c.strip() for c in corruptions.split(",") if c.strip()]}
    if severities is not None:
        kw["severities"] = _int_list(severities, "--severities")
    labels = run.labels()
    with _steps(run.progress) as on_step:
        result = module.run_robustness(run.clip(), run.images, opts=run.embed_options(), seed=seed, pretrained=run.pretrained,
                                       on_step=on_step, **labels, **kw)  # fmt: skip
    return result, lambda: module.report(result)


@task("calibration", IMAGES, LABELS)
def calibration(
    run: Run,
    bins: int = typer.Option(15, "--bins", min=1, help="Confidence bins."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> Outcome:
    """ECE, MCE, Brier and NLL before and after temperature scaling fitted on a validation half."""
    from cliplab.evaluate.tasks import calibration as module

    labels = run.labels()
    result = module.run_calibration(run.clip(), run.images, opts=run.embed_options(), n_bins=bins, seed=seed, pretrained=run.pretrained, **labels)
    return result, lambda: module.report(result)


@task("ood", IMAGES, LABELS)
def ood(
    run: Run,
    ood_images: str = typer.Option(..., "--ood-images", "--ood-dataset", help="Images from elsewhere, to tell apart from --images."),
) -> Outcome:
    """Out-of-distribution detection: AUROC, AUPR and FPR@95%TPR of MSP, max-logit, energy and MCM scores."""
    from cliplab.evaluate.tasks import ood as module

    labels = run.labels()
    result = module.run_ood(run.clip(), run.images, ood_images, opts=run.embed_options(), pretrained=run.pretrained, **labels)
    return result, lambda: module.report(result)


@task("fairness", IMAGES, LABELS)
def fairness(
    run: Run,
    group_column: list[str] = typer.Option(..., "--group-column", help="A metadata column naming each image's group (repeat for several; synthetic scenes: background, color, size, position)."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    multilabel: bool = typer.Option(False, "--multilabel", help="Each label cell holds a set of labels separated by '|' (chest X-ray style): per-label AUROC per group."),
) -> Outcome:
    """Per-group accuracy, error rates and AUROC with bootstrap intervals, gaps, and how predictable the group is."""
    from cliplab.evaluate.tasks import fairness as module

    labels = run.labels()
    result = module.run_fairness(run.clip(), run.images, group_column, opts=run.embed_options(), seed=seed,
                                 pretrained=run.pretrained, multilabel=multilabel, **labels)  # fmt: skip
    return result, lambda: module.report(result)


@task("diagnostics", IMAGES)
def diagnostics(run: Run, seed: int = typer.Option(0, "--seed", help=SEED_HELP)) -> Outcome:
    """Embedding geometry of a captioned dataset: modality gap, alignment, uniformity, recall@1."""
    from cliplab.evaluate.tasks import diagnostics as module

    result = module.run_diagnostics(run.clip(), run.images, run.embed_options(), seed=seed, pretrained=run.pretrained)
    return result, lambda: module.report(result)


@task("generation", IMAGES)
def generation(
    run: Run,
    captions: Optional[Path] = typer.Option(None, "--captions", help="A file with one caption per image, in order (default: each image's first caption)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference images for CMMD."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> Outcome:
    """Generated images: CLIPScore, RefCLIPScore, CMMD against --reference, Vendi and Schur-complement entropy."""
    from cliplab.evaluate.tasks import generation as module

    result = module.run_generation(run.clip(), run.images, captions, reference, run.embed_options(), seed=seed, pretrained=run.pretrained)
    return result, lambda: module.report(result)


@task("captioning", IMAGES)
def captioning(
    run: Run,
    captioner: Optional[Path] = typer.Option(None, "--captioner", help="A captioner folder (cliplab caption train --out); default: the bundled captioner of --model."),
    beam: int = typer.Option(1, "--beam", min=1, help="Beam width (1: greedy decoding)."),
) -> Outcome:
    """Captions of a captioned collection: BLEU-1..4 and CIDEr-D (pycocoevalcap) against its captions, CLIPScore and RefCLIPScore."""
    from cliplab.evaluate.tasks import captioning as module

    result = module.run_captioning(run.clip(), run.images, captioner, run.embed_options(), beam=beam, pretrained=run.pretrained)
    return result, lambda: module.report(result)


@task("skills", embeds=False)  # it renders and encodes its own scenes
def skills(
    run: Run,
    scenes: int = typer.Option(500, "--scenes", min=2, help="Synthetic scenes per skill."),
    seed: int = typer.Option(2027, "--seed", help=SEED_HELP),
) -> Outcome:
    """Compositional skills on synthetic scenes it generates: attribute binding, spatial relations, counting, long captions."""
    from cliplab.evaluate.tasks import skills as module

    clip = run.clip()
    with _steps(run.progress) as on_step:
        result = module.run_skills(clip, n=scenes, seed=seed, pretrained=run.pretrained, on_step=on_step)
    return result, lambda: module.report(result)


@task("mmvp", embeds=False)  # it renders and encodes its own twin scenes
def mmvp(
    run: Run,
    pairs: int = typer.Option(300, "--pairs", min=2, help="Twin pairs per kind."),
    seed: int = typer.Option(2028, "--seed", help=SEED_HELP),
) -> Outcome:
    """MMVP-style pairs of synthetic scenes that differ in one detail (colours exchanged; one colour, shape, size or position changed): pair accuracy (both images nearer their own caption) and twin separability."""
    from cliplab.evaluate.tasks import mmvp as module

    clip = run.clip()
    with _steps(run.progress) as on_step:
        result = module.run_mmvp(clip, n=pairs, seed=seed, pretrained=run.pretrained, on_step=on_step)
    return result, lambda: module.report(result)


@task("segmentation", IMAGES, embeds=False)  # dense features, not the feature store
def segmentation(
    run: Run,
    method: str = typer.Option("auto", "--method", help="auto (maskclip for a ResNet, naclip for a ViT), vanilla, maskclip, sclip, clearclip or naclip."),
    templates: TemplatesOption = None,
    pamr: bool = typer.Option(False, "--pamr", help="Refine label edges with pixel-adaptive mask refinement."),
    regions: bool = typer.Option(False, "--regions", help="Relabel each foreground region with the class of a crop around it (OVSeg-style)."),
    refiner: Optional[Path] = typer.Option(None, "--refiner", help="A learned refinement head file (cliplab.dense.refine)."),
    segmenter: Optional[Path] = typer.Option(None, "--segmenter", help="A trained segmenter folder (cliplab segmenter train) to evaluate instead of a training-free method; its base model is used."),
    proposals: str = typer.Option("learned", "--proposals", help="With --segmenter: learned (its proposer) or dense (connected regions of the training-free map)."),
    seen: Optional[str] = typer.Option(None, "--seen-classes", help="The training classes ('a,b' or a file; default: a --segmenter's own): also report seen_miou and unseen_miou."),
    mask_prompt: MaskPromptOption = None,
    sam_weights: SamWeightsOption = None,
    sam_kind: SamKindOption = SamKind.auto,
) -> Outcome:
    """Open-vocabulary segmentation: mIoU and friends on synthetic:<n>[:seed] or a folder with images/, masks/, classes.txt."""
    from cliplab.dense.datasets import open_mask_dataset
    from cliplab.dense.evaluate import run_segmentation, segmentation_report
    from cliplab.dense.refine import CorrelationRefiner

    dataset = open_mask_dataset(run.images)  # the inputs are checked before the model loads
    head = CorrelationRefiner.load(refiner) if refiner is not None else None
    seen_names = read_names(seen, "--seen-classes") if seen is not None else None
    prompt = load_mask_prompt(mask_prompt, segmenter)
    if sam_weights is not None and segmenter is None:
        raise InputError("--sam-weights proposes masks for a --segmenter; add one")
    if segmenter is not None:
        from cliplab.dense.ovseg import OVSegmenter

        trained = OVSegmenter.load(segmenter)
        masks = sam_proposer(sam_weights, sam_kind, str(trained.model.device)) if sam_weights is not None else proposals
        result = run_segmentation(trained.model, dataset, pretrained=trained.pretrained, batch_size=run.batch_size, progress=run.progress,
                                  trained=trained, seen=seen_names or trained.classes_, proposals=masks)  # fmt: skip
        return result, lambda: segmentation_report(result, dataset)
    result = run_segmentation(run.clip(), dataset, pretrained=run.pretrained, method=method, templates=templates or "default",
                              batch_size=run.batch_size, progress=run.progress, refine="pamr" if pamr else None,
                              regions=regions, refiner=head, seen=seen_names,
                              mask_prompt=prompt)  # fmt: skip
    return result, lambda: segmentation_report(result, dataset)


# --- the table on stdout --------------------------------------------------------------------------------
def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as dotted keys: ``{"before": {"ece": x}}`` -> ``{"before.ece": x}``."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def print_result(result) -> None:
    """The task's main table on stdout: per-skill rows for skills, per-score rows for OOD, else the metrics."""
    if result.task == "skills":
        table = Table(title=f"skills — {result.model} — {result.dataset}")
        for col in ("skill", "variant", "n", "accuracy", "chance"):
            table.add_column(col, justify="right" if col in ("n", "accuracy", "chance") else "left")
        for r in result.rows:
            table.add_row(r.skill, r.variant, str(r.n), f"{r.accuracy:.3f}", f"{r.chance:.3f}")
    elif result.task == "mmvp":
        table = Table(title=f"mmvp — {result.model} — {result.dataset}")
        for col in ("kind", "captions", "n", "pair acc", "image acc", "cosine", "blind", "separation"):  # short: 80 columns
            table.add_column(col, justify="left" if col in ("kind", "captions") else "right", no_wrap=col == "kind")
        for r in result.rows:
            table.add_row(r.kind, r.captions, str(r.n), *(f"{getattr(r, k):.3f}" for k in ("pair_accuracy", "image_accuracy", "twin_cosine", "blind_rate", "separation")))
    elif result.task == "ood":
        from cliplab.evaluate.tasks.ood import table as ood_table

        table = Table(title=f"ood — {result.model} — {result.dataset} vs {result.ood_dataset}")
        for col in ("score", "auroc", "aupr", "fpr95"):
            table.add_column(col, justify="left" if col == "score" else "right")
        for row in ood_table(result):
            table.add_row(row["score"], *(f"{row[k]:.4f}" for k in ("auroc", "aupr", "fpr95")))
    else:
        table = Table(title=f"{result.task} — {result.dataset}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in flatten(result.metrics).items():
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console().print(table)
