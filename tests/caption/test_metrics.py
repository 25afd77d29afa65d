"""The caption metrics are pycocoevalcap's scorers: checked against BLEU and CIDEr-D computed here from
their definitions (Papineni et al. 2002; Vedantam et al. 2015, the CIDEr-D form the COCO code uses)."""

from __future__ import annotations

import math
import shutil
from collections import Counter

import numpy as np
import pytest

from cliplab.caption.metrics import bleu, caption_scores, cider_d, tokenize
from cliplab.errors import InputError

CANDIDATES = ["a small red star at the top left", "a large blue square on a plain background", "the cat sat on the mat"]
REFERENCES = [
    ["a small red star at the top left on a striped background", "a red star in the upper left"],
    ["a large blue square in the center on a plain background", "a big blue square, plain background"],
    ["the cat is on the mat", "there is a cat on the mat"],
]


def ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def brute_bleu(cands: list[str], refs: list[list[str]], n: int) -> float:
    """Corpus BLEU-n: clipped n-gram precisions summed over the corpus, geometric mean, brevity penalty
    with the closest reference length (the shorter on ties)."""
    correct, guess, c_len, r_len = [0] * n, [0] * n, 0, 0
    for cand, rs in zip(cands, refs):
        words, ref_words = cand.split(), [r.split() for r in rs]
        c_len += len(words)
        r_len += min((abs(len(r) - len(words)), len(r)) for r in ref_words)[1]
        for k in range(1, n + 1):
            own = ngrams(words, k)
            most = Counter()
            for r in ref_words:
                most |= ngrams(r, k)
            correct[k - 1] += sum(min(c, most[g]) for g, c in own.items())
            guess[k - 1] += max(len(words) - k + 1, 0)
    score = math.exp(sum(math.log(c / g) for c, g in zip(correct, guess)) / n)
    return score * (math.exp(1 - r_len / c_len) if c_len < r_len else 1.0)


def brute_cider_d(cands: list[str], refs: list[list[str]], sigma: float = 6.0) -> float:
    """CIDEr-D: TF-IDF n-gram vectors (document frequency over the images' references), candidate
    weights clipped by the reference's, Gaussian length penalty, mean over n = 1..4, times 10."""
    docs = [set().union(*(ngrams(r.split(), k) for r in rs for k in range(1, 5))) for rs in refs]
    df = Counter(g for d in docs for g in d)
    log_n = math.log(len(cands))

    def vec(words: list[str], k: int) -> dict:
        return {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in ngrams(words, k).items()}

    total = 0.0
    for cand, rs in zip(cands, refs):
        h = cand.split()
        per_n = []
        for k in range(1, 5):
            vh = vec(h, k)
            s = 0.0
            for r in rs:
                vr = vec(r.split(), k)
                nh, nr = math.sqrt(sum(v * v for v in vh.values())), math.sqrt(sum(v * v for v in vr.values()))
                val = sum(min(v, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, v in vh.items())
                val = val / (nh * nr) if nh and nr else val
                s += val * math.exp(-((len(h) - len(r.split())) ** 2) / (2 * sigma**2))
            per_n.append(s)
        total += 10.0 * float(np.mean(per_n)) / len(rs)
    return total / len(cands)


def test_bleu_matches_its_definition():
    refs = [[tokenize(r) for r in rs] for rs in REFERENCES]
    got = bleu(CANDIDATES, REFERENCES)
    for n in range(1, 5):
        assert got[n - 1] == pytest.approx(brute_bleu(CANDIDATES, refs, n), rel=1e-6)


def test_cider_d_matches_its_definition():
    refs = [[tokenize(r) for r in rs] for rs in REFERENCES]
    assert cider_d(CANDIDATES, REFERENCES) == pytest.approx(brute_cider_d(CANDIDATES, refs), rel=1e-6)


def test_a_caption_equal_to_a_reference_scores_bleu_one_and_the_most_cider():
    refs = [[rs[0], rs[1]] for rs in REFERENCES]
    exact = [rs[0] for rs in REFERENCES]
    assert bleu(exact, refs)[3] == pytest.approx(1.0)
    assert cider_d(exact, refs) > cider_d(CANDIDATES, refs)
    scores = caption_scores(exact, refs)
    assert list(scores) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d"]


def test_tokenize_drops_punctuation_and_lowers_case():
    assert tokenize("A big Blue square, plain background.") == "a big blue square plain background"
    assert tokenize("in the top-left corner; a shape's edge!") == "in the top-left corner a shape 's edge"


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTBTokenizer needs java")
def test_tokenize_agrees_with_the_coco_ptb_tokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = [r for rs in REFERENCES for r in rs] + ["a medium-sized pink heart in the lower right, checkered background", "there is a tiny cyan shape's edge!"]
    ptb = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert [tokenize(t) for t in texts] == [ptb[i][0] for i in range(len(texts))]


def test_each_caption_needs_a_reference():
    with pytest.raises(InputError, match="no reference"):
        bleu(["a star"], [[]])
    with pytest.raises(InputError, match="2 captions but 1 reference"):
        cider_d(["a", "b"], [["a"]])
