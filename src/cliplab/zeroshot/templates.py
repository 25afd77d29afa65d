"""Prompt templates and prompt ensembles (CLIP, Radford et al. 2021, sec. 3.1.4).

A template is a string with a ``{c}`` (or ``{}``) placeholder for the class name. A template spec
is a built-in set name, a list of templates, a single template string, a ``.txt`` file (one
template per line) or a ``.json`` file holding either a list of templates or a dict
``classname -> list of full prompts`` (class-specific, CuPL-style prompts used verbatim).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from cliplab.errors import InputError
from cliplab.zeroshot._base import normalise_rows

Templates = list[str] | dict[str, list[str]]
TemplateSpec = Union[str, Path, Sequence[str], Mapping[str, Sequence[str] | str]]

TIP_ADAPTER_TEMPLATES = (
    "itap of a {c}.",
    "a bad photo of the {c}.",
    "a origami {c}.",
    "a photo of the large {c}.",
    "a {c} in a video game.",
    "art of the {c}.",
    "a photo of the small {c}.",
)
DEFAULT_TEMPLATES = ("a photo of a {c}.",)


@cache
def _openai_imagenet() -> tuple[str, ...]:
    # open_clip ships the 80 templates as lambdas; calling each with "{c}" gives the string form.
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{c}") for t in OPENAI_IMAGENET_TEMPLATES)


_BUILTIN = {
    "default": lambda: DEFAULT_TEMPLATES,
    "openai_imagenet": _openai_imagenet,
    "tip_adapter": lambda: TIP_ADAPTER_TEMPLATES,
}
TEMPLATE_SETS = tuple(_BUILTIN)


def builtin_templates(name: str) -> list[str]:
    """The built-in template set ``name`` (one of ``TEMPLATE_SETS``)."""
    if name not in _BUILTIN:
        raise InputError(f"unknown template set {name!r}; choose one of {', '.join(TEMPLATE_SETS)}")
    return list(_BUILTIN[name]())


def language_templates(language: str) -> list[str]:
    """The default template in ``language`` (one of ``synthetic.LANGUAGES``): English's "a photo of a {c}.",
    else that language's photo prompt of the synthetic scenes ("ein Foto: {c}", "{c}的照片")."""
    if language == "en":
        return list(DEFAULT_TEMPLATES)
    from cliplab.data.languages import language as lexicon

    return [lexicon(language).data["photo"].replace("{object}", "{c}")]


def normalise_template(template: str) -> str:
    """Rewrite a ``{}`` placeholder as ``{c}``; a template with neither is an error."""
    if not isinstance(template, str):
        raise InputError(f"a template must be a string, got {type(template).__name__}")
    out = template.replace("{}", "{c}")
    if "{c}" not in out:
        raise InputError(f"template {template!r} has no class placeholder; write {{c}} (or {{}}) where the class name goes")
    return out


def fill_template(template: str, classname: str) -> str:
    # Literal substitution rather than str.format, so any other braces stay as written.
    return normalise_template(template).replace("{c}", classname)


def _from_json(data: object, source: str) -> Templates:
    if isinstance(data, list):
        return [normalise_template(t) for t in data]
    if isinstance(data, dict):
        out: dict[str, list[str]] = {}
        for cls, prompts in data.items():
            prompts = [prompts] if isinstance(prompts, str) else prompts
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise InputError(f"{source}: class {cls!r} needs a non-empty list of prompt strings")
            out[str(cls)] = list(prompts)
        return out
    raise InputError(f"{source}: expected a JSON list of templates or a dict class -> list of prompts")


def _from_file(path: Path) -> Templates:
    if not path.is_file():
        raise FileNotFoundError(f"template file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
        return _from_json(data, str(path))
    return [normalise_template(line.strip()) for line in text.splitlines() if line.strip()]


def resolve_templates(spec: TemplateSpec) -> Templates:
    """Turn a template spec into a list of ``{c}`` templates or a dict class -> prompts."""
    if isinstance(spec, Path):
        out = _from_file(spec)
    elif isinstance(spec, str):
        if spec in _BUILTIN:
            out = builtin_templates(spec)
        elif spec.lower().endswith((".txt", ".json")) or Path(spec).is_file():
            out = _from_file(Path(spec))
        elif "{c}" in spec or "{}" in spec:
            out = [normalise_template(spec)]
        else:
            raise InputError(
                f"unknown template set {spec!r}; pass one of {', '.join(TEMPLATE_SETS)}, "
                "a list of templates with {c}, or a .txt/.json file"
            )
    elif isinstance(spec, Mapping):
        out = _from_json(dict(spec), "templates")
    elif isinstance(spec, Sequence):
        out = [normalise_template(t) for t in spec]
    else:
        raise InputError(f"cannot read templates from {type(spec).__name__}")
    if not out:
        raise InputError("the template set is empty")
    return out


def build_prompts(classnames: Sequence[str], templates: TemplateSpec) -> list[list[str]]:
    """The prompts for each class: every template filled in, or the class's own prompt list."""
    classnames = list(classnames)
    if not classnames:
        raise InputError("no class names given")
    resolved = resolve_templates(templates)
    if isinstance(resolved, dict):
        missing = [c for c in classnames if c not in resolved]
        if missing:
            raise InputError(f"class-specific prompts are missing for {len(missing)} classes, e.g. {missing[:3]}")
        return [list(resolved[c]) for c in classnames]
    return [[t.replace("{c}", c) for t in resolved] for c in classnames]


def ensemble_text_weights(model, classnames: Sequence[str], templates: TemplateSpec = "default") -> np.ndarray:
    """(C, D) float32 class embeddings: per class, the mean of its normalised prompt embeddings,
    re-normalised (CLIP sec. 3.1.4; CLIP_benchmark ``zero_shot_classifier``). All prompts are
    encoded in one batched call."""
    per_class = build_prompts(classnames, templates)
    counts = np.array([len(p) for p in per_class])
    emb = normalise_rows(model.encode_texts([p for ps in per_class for p in ps]))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.add.reduceat(emb, starts, axis=0) / counts[:, None]
    return normalise_rows(means)
