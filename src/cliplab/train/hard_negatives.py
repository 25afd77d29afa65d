"""Hard negatives made by editing attributes: of a caption's words, or of a synthetic scene.

Two colours named in a caption are exchanged ("a red star and a blue square" -> "a blue star
and a red square"); otherwise, or by chance, a shape word or a size word is replaced by another
of its kind. The words come from the synthetic scenes' vocabulary plus common colour names, so
the editor also serves manifests of real photos with plain captions.

For synthetic scenes the same edits apply to the scene itself (:func:`edited_scene`), which gives
an edited image together with its caption: the edited pairs of CLIP-IN (Wang et al. 2025).
"""

from __future__ import annotations

import re

import numpy as np

from cliplab.data import synthetic
from cliplab.data.synthetic import SceneSpec

COLOR_WORDS: tuple[str, ...] = (*synthetic.COLOR_NAMES, "black", "white", "brown", "grey", "gray")
SHAPE_WORDS: tuple[str, ...] = synthetic.SHAPES
# Size words and their synonyms as the scene captions use them, grouped by the size they mean.
SIZE_GROUPS: tuple[tuple[str, ...], ...] = (("small", "little", "tiny"), ("medium", "medium-sized", "mid-sized"), ("large", "big"))
SIZE_WORDS = tuple(w for group in SIZE_GROUPS for w in group)
# How often each edit is tried first (when the caption or scene allows it). Exchanged colours come
# first most often: they are the edit a bag-of-words match cannot tell apart (attribute binding).
EDIT_WEIGHTS = {"swap_colors": 0.8, "shape": 0.1, "size": 0.1}


def _spans(text: str, vocab: tuple[str, ...]) -> list[tuple[int, int, str]]:
    words = "|".join(sorted((re.escape(w) for w in vocab), key=len, reverse=True))
    return [(m.start(), m.end(), m.group(0)) for m in re.finditer(rf"\b(?:{words})\b", text)]


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, last = [], 0
    for start, end, word in spans:
        out += [text[last:start], word]
        last = end
    return "".join(out) + text[last:]


def swap_colors(caption: str, rng: np.random.Generator) -> str | None:
    """The caption with two different colour words exchanged, or None if it names fewer than two."""
    spans = _spans(caption, COLOR_WORDS)
    pairs = [(i, j) for i in range(len(spans)) for j in range(i + 1, len(spans)) if spans[i][2] != spans[j][2]]
    if not pairs:
        return None
    i, j = pairs[rng.integers(len(pairs))]
    edited = list(spans)
    edited[i] = (spans[i][0], spans[i][1], spans[j][2])
    edited[j] = (spans[j][0], spans[j][1], spans[i][2])
    return _replace(caption, edited)


def replace_word(caption: str, rng: np.random.Generator, kind: str) -> str | None:
    """The caption with one shape (or size) word replaced by another of its kind, or None."""
    vocab = SHAPE_WORDS if kind == "shape" else SIZE_WORDS
    spans = _spans(caption, vocab)
    if not spans:
        return None
    k = int(rng.integers(len(spans)))
    start, end, word = spans[k]
    if kind == "shape":
        choices = [w for w in SHAPE_WORDS if w != word]
    else:
        choices = [g[0] for g in SIZE_GROUPS if word not in g]
    spans[k] = (start, end, choices[rng.integers(len(choices))])
    return _replace(caption, spans)


def swapped_phrases(phrase: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Every edit of a region phrase's shape word into another shape (none of ``exclude``); a phrase
    without a shape word gets its colour word changed instead; [] when it names neither. A region's
    contrast then has to tell its shape apart, which colour and position alone never demand."""
    for vocab in (SHAPE_WORDS, COLOR_WORDS[: len(synthetic.COLOR_NAMES)]):
        spans = _spans(phrase, vocab)
        if spans:
            start, end, word = spans[0]
            return [_replace(phrase, [(start, end, w)]) for w in vocab if w != word and w not in exclude]
    return []


def hard_negative(caption: str, rng: np.random.Generator) -> str | None:
    """One attribute-edited version of ``caption`` (None when it names no attribute word)."""
    for edit in _edit_order(rng):
        out = swap_colors(caption, rng) if edit == "swap_colors" else replace_word(caption, rng, edit)
        if out is not None and out != caption:
            return out
    return None


def _edit_order(rng: np.random.Generator) -> list[str]:
    """The edits of EDIT_WEIGHTS in a random order, heavier ones more often first."""
    edits = list(EDIT_WEIGHTS)
    p = np.array(list(EDIT_WEIGHTS.values()))
    return [edits[i] for i in rng.choice(len(edits), size=len(edits), replace=False, p=p / p.sum())]


def edited_scene(spec: SceneSpec, rng: np.random.Generator, split: str = "train") -> SceneSpec:
    """A twin of the scene with the edit of :func:`hard_negative`: its objects' colours exchanged,
    else one object's shape or size changed (only to shape-colour pairs of ``split``)."""
    for edit in _edit_order(rng):
        if edit == "swap_colors":
            twin = synthetic.swap_colours(spec, split)
        else:
            twin = synthetic.perturb_spec(spec, rng, split, edit)
        if twin is not None and twin != spec:
            return twin
    return synthetic.perturb_spec(spec, rng, split)
