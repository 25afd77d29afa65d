"""BLEU and CIDEr-D of generated captions, scored by pycocoevalcap (the COCO caption evaluation code).

pycocoevalcap's ``Bleu`` (Papineni et al. 2002; corpus BLEU, "closest" reference length) and
``Cider`` (Vedantam et al. 2015, in its CIDEr-D form: TF-IDF n-gram vectors for n = 1..4, counts of
the candidate clipped by the reference's, a Gaussian length penalty with sigma = 6, times 10; the
document frequencies come from the references of the evaluated set) score the texts. The COCO
pipeline first tokenizes with Stanford's PTBTokenizer (Java) and drops punctuation; :func:`tokenize`
does the same in Python (lower case, punctuation split off and dropped, hyphenated words kept whole),
so no Java is needed and the scores do not depend on it being installed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cliplab.errors import InputError

# the tokens pycocoevalcap's PTBTokenizer removes after tokenizing
PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*|'[^\W_]+|\S")  # 'shape's' -> 'shape', "'s" as PTB splits it


def tokenize(text: str) -> str:
    """The caption as pycocoevalcap scores it: lower-case tokens joined by spaces, punctuation dropped."""
    return " ".join(t for t in _TOKEN.findall(text.lower()) if t not in PUNCTUATION)


def _inputs(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    if len(candidates) != len(references):
        raise InputError(f"{len(candidates)} captions but {len(references)} reference lists; give the references of every caption")
    if not candidates:
        raise InputError("no captions to score")
    empty = next((i for i, refs in enumerate(references) if not refs), None)
    if empty is not None:
        raise InputError(f"caption {empty} has no reference caption; BLEU and CIDEr-D need at least one per image")
    gts = {i: [tokenize(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [tokenize(c)] for i, c in enumerate(candidates)}
    return gts, res


def _scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as exc:
        raise InputError("caption metrics need pycocoevalcap: pip install pycocoevalcap") from exc
    return Bleu, Cider


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1 .. BLEU-``n`` of ``candidates`` against their ``references`` (pycocoevalcap's ``Bleu``)."""
    Bleu, _ = _scorers()
    gts, res = _inputs(candidates, references)
    score, _ = Bleu(n).compute_score(gts, res, verbose=0)
    return [float(s) for s in score]


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """CIDEr-D of ``candidates`` against their ``references`` (pycocoevalcap's ``Cider``: n = 4, sigma = 6)."""
    _, Cider = _scorers()
    gts, res = _inputs(candidates, references)
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def caption_scores(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``bleu_1`` .. ``bleu_4`` and ``cider_d`` of a set of generated captions."""
    scores = {f"bleu_{i}": s for i, s in enumerate(bleu(candidates, references), start=1)}
    scores["cider_d"] = cider_d(candidates, references)
    return scores
