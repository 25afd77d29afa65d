"""Caption rewrites (LaCLIP, Fan et al. 2023): a caption may come with rewrites, and each step
trains on one of them, drawn at random. Without rewrites from the data, a rule-based rewriter
(synonyms, reordered clauses, another framing) makes them, which serves the synthetic scenes.
"""

from __future__ import annotations

import re

import numpy as np

SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("little", "tiny"), "large": ("big",), "medium": ("medium-sized", "mid-sized"),
    "center": ("middle", "centre"), "photo": ("picture", "image"), "picture": ("photo", "image"),
    "image": ("picture", "photo"), "background": ("backdrop",),
}  # fmt: skip
FRAMES: tuple[str, ...] = ("{}", "a picture of {}", "a photo of {}", "there is {}", "an image showing {}")
_FRAME_PREFIX = re.compile(r"^(a picture of|a photo of|there is|an image showing|an image of)\s+", re.IGNORECASE)


def _clauses(text: str) -> tuple[list[str], str]:
    """Noun-phrase clauses joined by ', ' / ' and ', and a trailing ' on a ... background' part."""
    body, sep, tail = text.partition(" on a ")
    tail = f" on a {tail}" if sep else ""
    parts = [p for p in re.split(r",\s*|\s+and\s+", body) if p]
    return parts, tail


def rule_rewrite(caption: str, rng: np.random.Generator) -> str:
    """A paraphrase of ``caption``: its clauses reordered, some words swapped for synonyms, a new frame."""
    core = _FRAME_PREFIX.sub("", caption.strip())
    parts, tail = _clauses(core)
    if len(parts) > 1:
        parts = [parts[i] for i in rng.permutation(len(parts))]
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def synonym(m: re.Match) -> str:
        options = SYNONYMS[m.group(0)]
        return options[rng.integers(len(options))] if rng.random() < 0.5 else m.group(0)

    words = re.compile(r"\b(" + "|".join(SYNONYMS) + r")\b")
    text = words.sub(synonym, joined + tail)
    return FRAMES[rng.integers(len(FRAMES))].format(text)


def pick_caption(captions: list[str], rng: np.random.Generator, rule_rewrites: bool) -> str:
    """One of the caption and its rewrites, uniformly; with ``rule_rewrites`` a rule-made rewrite counts as one more."""
    n = len(captions) + int(rule_rewrites)
    k = int(rng.integers(n))
    return captions[k] if k < len(captions) else rule_rewrite(captions[0], rng)
