"""MetaCLIP curation (Xu et al. 2024; facebookresearch/MetaCLIP ``substr_matching.py``, ``balancing.py``).

1. Substring matching: a caption matches a metadata entry when ``" " + entry + " "`` occurs in
   the caption with spaces around punctuation and whitespace made spaces. Case-sensitive, as in
   the reference.
2. Balancing with threshold t: entry e matched by count[e] captions gets p[e] = t / max(count[e], t)
   (1 for tail entries); a caption is kept when any of its entries passes an independent trial
   U(0,1) < p[e]; captions that match nothing are dropped. Deterministic given the seed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_PUNCT = re.compile(r"([,.;:?!`])")
_SPACE = re.compile(r"[\t\n\r]")


def spacing(text: str) -> str:
    """The caption padded with spaces, punctuation wrapped in spaces, tabs and newlines as spaces."""
    return " " + _SPACE.sub(" ", _PUNCT.sub(r" \1 ", text)) + " "


def match_entries(texts: Sequence[str], entries: Sequence[str]) -> list[list[int]]:
    """For each text, the indices of the metadata entries it contains (reference order)."""
    padded = [(i, f" {e} ") for i, e in enumerate(entries)]
    out = []
    for text in texts:
        spaced = spacing(text)
        out.append([i for i, e in padded if e in spaced])
    return out


def entry_counts(matches: Sequence[Sequence[int]], n_entries: int) -> np.ndarray:
    counts = np.zeros(n_entries, np.int64)
    for m in matches:
        counts[list(m)] += 1
    return counts


def balance(matches: Sequence[Sequence[int]], counts: np.ndarray, t: int, seed: int = 0) -> np.ndarray:
    """Keep mask: text i is kept when any matched entry e passes U(0,1) < t / max(count[e], t)."""
    p = t / np.maximum(counts, t)
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(matches), bool)
    for i, m in enumerate(matches):
        if m:
            keep[i] = bool(np.any(rng.random(len(m)) < p[list(m)]))
    return keep


@dataclass
class Curation:
    keep: np.ndarray  # bool per text
    counts_before: np.ndarray  # per entry
    counts_after: np.ndarray
    t: int

    def summary(self, entries: Sequence[str], top: int = 20) -> dict:
        """Head/tail figures before and after: head entries are those matched by more than t texts."""

        def side(counts: np.ndarray) -> dict:
            head = counts > self.t
            order = np.argsort(-counts, kind="stable")[:top]
            return {"matched_entries": int((counts > 0).sum()), "head_entries": int(head.sum()),
                    "head_share": float(counts[head].sum() / max(1, counts.sum())),
                    "top": {entries[i]: int(counts[i]) for i in order if counts[i] > 0}}  # fmt: skip

        return {"t": self.t, "texts": len(self.keep), "kept": int(self.keep.sum()),
                "before": side(self.counts_before), "after": side(self.counts_after)}  # fmt: skip


def curate(texts: Sequence[str], entries: Sequence[str], t: int, seed: int = 0) -> Curation:
    """Match ``texts`` against ``entries`` and balance with threshold ``t``."""
    matches = match_entries(texts, entries)
    before = entry_counts(matches, len(entries))
    keep = balance(matches, before, t, seed)
    after = entry_counts([m for m, k in zip(matches, keep) if k], len(entries))
    return Curation(keep, before, after, t)


def near_duplicates(X: np.ndarray, threshold: float = 0.95, block: int = 1024) -> np.ndarray:
    """Keep mask over L2-normalised rows, greedy in order: a row is dropped when its cosine
    similarity to an earlier kept row is at least ``threshold`` (1.0: exact duplicates only)."""
    X = np.asarray(X, np.float32)
    keep = np.ones(len(X), bool)
    limit = threshold - 1e-6  # float32 dot products of equal unit vectors land a hair under 1
    for start in range(0, len(X), block):
        stop = min(start + block, len(X))
        chunk = X[start:stop]
        before = np.flatnonzero(keep[:start])
        if len(before):
            keep[start:stop] &= (chunk @ X[before].T).max(1) < limit
        sims = chunk @ chunk.T
        for i in range(stop - start):
            if keep[start + i]:
                later = np.arange(i + 1, stop - start)
                keep[start + later[sims[i, later] >= limit]] = False
    return keep


def distribution_png(curation: Curation) -> bytes:
    """Entry counts sorted from head to tail, before and after balancing, with the threshold t."""
    from matplotlib.figure import Figure

    from cliplab.evaluate.plots import figure_png

    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    for counts, label in ((curation.counts_before, "before"), (curation.counts_after, "after")):
        ranked = np.sort(counts[counts > 0])[::-1]
        ax.plot(np.arange(1, len(ranked) + 1), ranked, label=f"{label} ({int(counts.sum())} matches)")
    ax.axhline(curation.t, color="grey", linestyle="--", label=f"t = {curation.t}")
    ax.set(xscale="log", yscale="log", xlabel="metadata entry (by rank)", ylabel="texts matching it", title="MetaCLIP balancing: head and tail")
    ax.legend()
    return figure_png(fig)
