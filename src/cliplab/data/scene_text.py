"""Other texts of a synthetic scene: noisy alt-text and long multi-sentence descriptions.

Alt-text mimics what web captions get wrong (VeCLIP, Lai et al. 2024, Sec. 1: alt-texts are
short, miss attributes and are often unrelated boilerplate): each object loses its colour, size
and position words independently at ``missing``, a kept colour word is wrong at ``wrong_colour``,
and the whole text is a generic phrase at ``generic``.

A long caption (Long-CLIP, Zhang et al. 2024, Sec. 3: detailed texts of 100+ tokens whose first
sentence is the short, salient one) is the short caption, then one sentence per object, one per
neighbouring pair of objects (in drawing order) saying where they lie relative to each other, and one for the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from cliplab.data.synthetic import COLOR_NAMES, POSITIONS, SceneObject, SceneSpec, position_phrase, short_caption, with_article
from cliplab.errors import InputError

GENERIC_PHRASES: tuple[str, ...] = (
    "image", "a picture", "photo", "untitled", "click to enlarge", "stock photo", "thumbnail", "view image", "img 0042",
)  # fmt: skip


@dataclass(frozen=True)
class AltTextRates:
    """How noisy alt-text is: each rate a probability in [0, 1]."""

    missing: float = 0.3  # per object and per attribute (colour, size, position): the word is left out
    wrong_colour: float = 0.15  # per kept colour word: another colour is said instead
    generic: float = 0.2  # per caption: a generic phrase replaces the whole description

    def __post_init__(self) -> None:
        for name in ("missing", "wrong_colour", "generic"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"alt-text rate {name.replace('_', '-')} must be between 0 and 1, got {value}")


def _noisy_object(obj: SceneObject, rates: AltTextRates, rng: np.random.Generator) -> str:
    keep_colour, keep_size, keep_position = rng.random(3) >= rates.missing
    colour = obj.color
    if keep_colour and rng.random() < rates.wrong_colour:
        others = [c for c in COLOR_NAMES if c != obj.color]
        colour = others[rng.integers(len(others))]
    words = [obj.size if keep_size else None, colour if keep_colour else None, obj.shape]
    phrase = with_article(" ".join(w for w in words if w))
    return phrase + (" " + position_phrase(obj.position) if keep_position else "")


def alt_text(spec: SceneSpec, rng: np.random.Generator, rates: AltTextRates = AltTextRates()) -> str:
    """A noisy web-style caption of ``spec`` (see the module docstring); draws from ``rng``."""
    if rng.random() < rates.generic:
        return GENERIC_PHRASES[rng.integers(len(GENERIC_PHRASES))]
    parts = [_noisy_object(o, rates, rng) for o in spec.objects]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` lies relative to ``b`` on the 3x3 grid ('above and to the left of', 'beside', ...)."""
    (ra, ca), (rb, cb) = POSITIONS[a.position], POSITIONS[b.position]
    vertical = "above" if ra < rb else "below" if ra > rb else ""
    horizontal = "to the left of" if ca < cb else "to the right of" if ca > cb else ""
    if vertical and horizontal:
        return f"{vertical} and {horizontal}"
    return vertical or horizontal or "in the same area as"


def long_caption(spec: SceneSpec) -> str:
    """Several sentences: the short caption first (Long-CLIP's short branch reads it back as the text
    before the first '. '), then each object, each neighbouring pair of objects, and the background."""
    sentences = [short_caption(spec)]
    for o in spec.objects:
        sentences.append(f"the {o.color} {o.shape} is {o.size}, {position_phrase(o.position)}")
    for a, b in pairwise(spec.objects):
        sentences.append(f"the {a.color} {a.shape} is {_relation(a, b)} the {b.color} {b.shape}")
    sentences.append(f"the background is {spec.background}")
    return ". ".join(sentences) + "."
