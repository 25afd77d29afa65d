"""What every command shares: one-line failures, the shared options (one flag per idea), name lists."""

from __future__ import annotations

import errno
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Optional, TypeVar

import typer

from cliplab.errors import CliplabError, InputError, command_line_spelling
from cliplab.models import DEFAULT_MODEL
from cliplab.models.options import CHOICES as PRECISION_CHOICES
from cliplab.models.options import DEFAULT_PRECISION

if TYPE_CHECKING:
    from cliplab.data.sources import ImageSource
    from cliplab.features import Features
    from cliplab.models import Model

T = TypeVar("T")

# The options commands share, declared once as typed aliases: a command writes ``model: ModelOption =
# DEFAULT_MODEL`` (typer takes the default from the signature, never from inside ``Annotated``).
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model spec: cliplab:shapes-tiny | openclip:<arch> | hf:<repo or dir> | a model folder cliplab wrote (train --out).")]
PretrainedOption = Annotated[Optional[str], typer.Option("--pretrained", "-p", help="open_clip tag, local checkpoint file, or hf-hub:org/name.")]
# Options of the commands that embed a collection (embed, classify, eval, ...): one flag per idea.
ImagesOption = Annotated[str, typer.Option("--images", "-i", help="Images: a folder, a .csv/.tsv/.jsonl manifest, .tar shards, or synthetic:<n>[:seed].")]
ClassnamesOption = Annotated[Optional[str], typer.Option("--classnames", help="Class names 'a,b,c' or a file with one per line (lines starting with # are comments).")]
Precision = Enum("Precision", {name: name for name in PRECISION_CHOICES}, type=str)  # --precision's choices
PrecisionOption = Annotated[Precision, typer.Option(
    "--precision",
    help="Compute precision: fp32 (the default, as load_model's: the same numbers on every machine), auto (bf16 "
    "where the hardware runs it natively, else fp32), bf16, fp16 (CUDA only) or int8 (CPU only). Embeddings are float32 either way.",
)]
BatchSizeOption = Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Images per forward pass (default: 256 on CUDA, 64 on the CPU).")]
Decode = Enum("Decode", {name: name for name in ("auto", "cpu", "gpu")}, type=str)  # --decode's choices
DecodeOption = Annotated[Decode, typer.Option(
    "--decode",
    help="Where JPEGs are decoded: auto (on the GPU when the model runs on CUDA, else on the CPU), cpu (PIL in "
    "worker processes) or gpu (torchvision on the model's device). Files the GPU decoder refuses fall back to the CPU.",
)]
CacheDirOption = Annotated[Optional[Path], typer.Option("--cache-dir", help="Folder of the embedding cache: images embedded before by the same model are not computed again, so a killed run resumes (default: the platform cache folder, see cliplab cache info).")]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")]
WorkersOption = Annotated[Optional[int], typer.Option("--workers", min=0, help="Image decoding processes (0: decode in this process; default: chosen from the device and cores).")]
LayersOption = Annotated[Optional[str], typer.Option(
    "--layers",
    help="Multi-level features (COMM) instead of the embedding: block indices of a ViT image tower, e.g. -1,-2,-3 "
    "(negative: from the last block); each layer's tokens LayerNorm-ed, side by side, for heads such as a linear "
    "probe. The layer set is part of the cache key.",
)]
TokensOption = Annotated[str, typer.Option(
    "--tokens",
    help="With --layers, which tokens of each layer: cls, mean (of the patch tokens) and/or gridK (patch tokens "
    "averaged over a KxK grid; grid = grid2), joined by '+', e.g. cls+grid2.",
)]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress on long work (on by default).")]
OutJsonOption = Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the results as JSON to this file.")]
# Options of the commands that write results and a report (eval).
ResultsOption = Annotated[Path, typer.Option("--out", "-o", help="Results JSON to write (CLIP_benchmark layout: dataset, model, pretrained, task, metrics, and what was run).")]
ReportOption = Annotated[Optional[Path], typer.Option("--report", help="Also write a self-contained HTML report (what was run, metrics, figures, examples).")]
# Manifest options (csv/tsv/jsonl sources only).
ImageColOption = Annotated[Optional[str], typer.Option("--image-col", help="Manifest column holding image paths (default: the first of image, filepath, path, file, filename).")]
CaptionColOption = Annotated[Optional[str], typer.Option("--caption-col", help="Manifest column holding captions (default: caption, captions, text or title).")]
LabelColOption = Annotated[Optional[str], typer.Option("--label-col", help="Manifest column holding labels (default: label, class or category).")]
LangColOption = Annotated[Optional[str], typer.Option("--lang-col", help="Manifest column holding each caption's language code (default: language or lang).")]
LanguageOption = Annotated[Optional[str], typer.Option("--language", help="Language of the texts: en, de, fr, es, zh, ja or ar. Synthetic scenes: captions and "
                                                       "prompts in that language; a manifest: only its captions in that language (see --lang-col).")]

# Options of the commands that segment (segment, eval --task segmentation).
SamKind = Enum("SamKind", {name: name for name in ("auto", "vit_b", "vit_l", "vit_h")}, type=str)  # --sam-kind's choices
SamWeightsOption = Annotated[Optional[Path], typer.Option(
    "--sam-weights",
    help="An official SAM checkpoint (sam_vit_[b|l|h] .pth; needs cliplab[sam]): its automatic masks are the "
    "--segmenter's proposals (with segment --trident: Trident's refinement masks). Nothing downloads.",
)]
SamKindOption = Annotated[SamKind, typer.Option("--sam-kind", help="With --sam-weights: vit_b, vit_l or vit_h (auto: from the weights' shapes).")]
MaskPromptOption = Annotated[Optional[Path], typer.Option(
    "--mask-prompt",
    help="With --regions: a mask prompt file (cliplab segmenter prompt); each region is classified from its masked crop "
    "with the prompt's tokens on the blank patches (OVSeg mask prompt tuning). A --segmenter carries its own.",
)]


def check_language(language: str | None) -> str | None:
    """``--language`` as given, checked against ``synthetic.LANGUAGES``."""
    from cliplab.data.synthetic import LANGUAGES

    if language is not None and language not in LANGUAGES:
        raise InputError(f"--language {language!r} is unknown; use one of {', '.join(LANGUAGES)}")
    return language


def option_help(option: Any) -> str:
    """The help text of a shared option alias, for a command that declares the flag its own way."""
    return option.__metadata__[0].help


class OnConflict(str, Enum):
    error = "error"
    first = "first"


OnConflictOption = Annotated[OnConflict, typer.Option("--on-conflict", help="Manifest rows giving one image two labels: error (stop and name the rows) or first (keep the first label).")]


def open_images(images: str, image_col: str | None = None, caption_col: str | None = None,
                label_col: str | None = None, on_conflict: OnConflict = OnConflict.error, lang_col: str | None = None,
                **kw: Any) -> ImageSource:  # fmt: skip
    """Open the ``--images`` source; manifest options given for another kind of source are an error."""
    from cliplab.data.sources import MANIFEST_EXTENSIONS, open_source

    given = {"--image-col": image_col, "--caption-col": caption_col, "--label-col": label_col, "--lang-col": lang_col}
    given = {flag: v for flag, v in given.items() if v is not None}
    if on_conflict != OnConflict.error:
        given["--on-conflict"] = on_conflict.value
    if Path(images).suffix.lower() not in MANIFEST_EXTENSIONS:
        if given:
            raise InputError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to manifests (.csv/.tsv/.jsonl) only, not to --images {images}")
        return open_source(images, **kw)
    if lang_col is not None:
        kw["lang_col"] = lang_col
    return open_source(images, image_col=image_col, caption_col=caption_col, label_col=label_col,
                       on_conflict=on_conflict.value, **kw)  # fmt: skip


def say_what_was_left_out(feats: Features, out: Path) -> None:
    """Print the source's notes and the skip summary of an embedding run; write the skipped list
    beside ``out`` (``OUT/skipped.csv`` for a folder, ``OUT.skipped.csv`` for a file) and name it."""
    from cliplab.features.pipeline import skip_summary

    for note in feats.stats.get("source_notes", []):
        typer.echo(f"note: {note}", err=True)
    if feats.skipped:
        path = out / "skipped.csv" if out.is_dir() else out.with_name(f"{out.stem}.skipped.csv")
        feats.save_skipped(path)
        typer.echo(f"skipped: {skip_summary(feats.skipped, feats.stats['images_total'])}; list in {path}", err=True)


def cache_folder(cache_dir: Path | None, no_cache: bool) -> Path | None:
    """The cache folder a command embeds with: ``--cache-dir``, else the platform default; None with ``--no-cache``."""
    from cliplab.features.cache_folder import default_cache_dir

    if no_cache:
        if cache_dir is not None:
            raise InputError("--no-cache and --cache-dir contradict each other; pass one")
        return None
    return cache_dir if cache_dir is not None else default_cache_dir()


def load_model_for(model: str, pretrained: str | None, precision: "str | Precision", announce: bool = True):
    """``load_model`` for a command; with ``--precision auto`` and ``announce`` (the command's
    ``--progress``) one line on stderr says what was chosen and why."""
    from cliplab.models import load_model
    from cliplab.models.precision import auto_precision

    precision = getattr(precision, "value", precision)
    clip = load_model(model, pretrained=pretrained, precision=precision)
    if precision == "auto" and announce:
        typer.echo(f"precision: {clip.precision} ({auto_precision(clip.device)[1]})", err=True)
    return clip


@dataclass(frozen=True)
class EmbeddingOptions:
    """The options every command that loads a model and embeds a collection shares (``--model``,
    ``--pretrained``, ``--precision``, ``--decode``, ``--cache-dir``/``--no-cache``, ``--batch-size``,
    ``--workers``, ``--progress``): built once per command from its flags, turned into a model and
    ``embed`` keyword arguments by :meth:`prepare`. ``layers``/``tokens`` (``--layers``/``--tokens``,
    offered by ``embed``) make the model give multi-level features (``Model.multilevel``)."""

    model: str = DEFAULT_MODEL
    pretrained: str | None = None
    precision: str = DEFAULT_PRECISION
    decode: str = "auto"
    cache_dir: Path | None = None
    no_cache: bool = False
    batch_size: int | None = None
    workers: int | None = None
    progress: bool = True
    layers: str | None = None  # multi-level features (Model.multilevel) instead of the embedding
    tokens: str = "cls"

    def __post_init__(self) -> None:  # the flags' enums as the strings the library takes
        object.__setattr__(self, "precision", getattr(self.precision, "value", self.precision))
        object.__setattr__(self, "decode", getattr(self.decode, "value", self.decode))

    def embed_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``cliplab.features.embed``; caches by default."""
        return {"cache_dir": cache_folder(self.cache_dir, self.no_cache), "batch_size": self.batch_size,
                "num_workers": self.workers, "progress": self.progress, "decode": self.decode}  # fmt: skip

    def load_model(self) -> Model:
        clip = load_model_for(self.model, self.pretrained, self.precision, announce=self.progress)
        if self.layers is not None:
            return clip.multilevel(self.layers, self.tokens)
        return clip

    def prepare(self) -> tuple[Model, dict[str, Any]]:
        """The loaded model and the ``embed`` keyword arguments; contradicting flags fail before the model loads."""
        kwargs = self.embed_kwargs()
        if self.layers is None and self.tokens != "cls":
            raise InputError("--tokens applies with --layers; add --layers (e.g. -1,-2,-3) or drop --tokens")
        return self.load_model(), kwargs


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors a user can fix (``CliplabError``, ``OSError``) into one line on stderr and exit 2.

    Anything else is a bug and keeps its traceback.
    """
    try:
        with command_line_spelling():
            yield
    except CliplabError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:
        typer.echo(f"error: {os_error_message(exc)}", err=True)
        raise typer.Exit(2) from exc


def one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


_OS_WORDS = {
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "path exists and is a file",
    errno.EISDIR: "path is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the disk",
    errno.EROFS: "the file system is read-only",
    errno.ENAMETOOLONG: "the name is too long",
}


def os_error_message(exc: OSError) -> str:
    """An OS error in plain words naming the path it concerns: 'permission denied: out/x.json'."""
    words = _OS_WORDS.get(exc.errno or -1) or (exc.strerror or "").lower() or one_line(str(exc))
    path = exc.filename
    if path is not None:
        name = os.fspath(path)
        base = os.path.basename(name)
        if base.startswith(".") and base.endswith((".tmp", ".partial")):  # never show a temporary name:
            real = base[1:].rsplit(".", 2)[0]  # ".<name>.<random>.tmp" (cliplab.files) -> "<name>"
            name = os.path.join(os.path.dirname(name), real)
        return f"{words}: {name}"
    return words


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Print each Python warning raised inside as one 'warning: ...' line on stderr.

    Skip summaries are left to ``say_what_was_left_out``, which also writes the list.
    """
    from cliplab.features.pipeline import SkippedWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", SkippedWarning)
        # torchvision 0.29's notice that its JPEG decoders (embed's decode "gpu") move to TorchCodec is
        # for cliplab's developers; the library leaves the process-wide filters alone
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        try:
            yield
        finally:
            for w in caught:
                typer.echo(f"warning: {w.message}", err=True)


def sam_proposer(weights: Path, kind: "str | SamKind", device: str):
    """The ``SamProposer`` of ``--sam-weights``/``--sam-kind``."""
    from cliplab.dense.sam import SamProposer

    kind = getattr(kind, "value", kind)
    return SamProposer.from_checkpoint(weights, None if kind == "auto" else kind, device=device)


def load_mask_prompt(path: Path | None, segmenter: Path | None):
    """The ``MaskPrompt`` of ``--mask-prompt`` (None without one; it follows the model to its device);
    a ``--segmenter`` carries its own."""
    if path is not None and segmenter is not None:
        raise InputError("--mask-prompt is for --regions; a --segmenter carries its own (segmenter train --mask-prompt-steps)")
    if path is None:
        return None
    from cliplab.dense.regions import MaskPrompt

    return MaskPrompt.load(path)


def read_names(value: str, option: str) -> list[str]:
    """Names from an option value: an existing file (one name per line, ``#`` comments) or 'a,b,c'."""
    path = Path(value)
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if not line.lstrip().startswith("#")]
    elif "," not in value and path.suffix.lower() in (".txt", ".csv", ".lst"):
        raise InputError(f"{option} file not found: {value}")
    else:
        names = [part.strip() for part in value.split(",")]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"{option} names no classes; pass 'a,b,c' or a file with one name per line")
    from cliplab.validation import check_classnames

    return check_classnames(names, name=option)


def is_interactive() -> bool:
    return sys.stderr.isatty()
