"""Greedy and beam decoding over a next-token function, stopping at end-of-text or at ``max_length``.

``step(tokens, rows)`` gives the log-probabilities (M, V) of the next token after each prefix in
``tokens`` (M, L), where ``rows`` (M,) says which image each prefix belongs to. Both decoders return,
per image, the generated ids without the start token and without the end-of-text token; at most
``max_length`` tokens are generated (end-of-text included), so a caption has at most ``max_length``
ids, and exactly that many only when it never ended.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cliplab.errors import InputError

Tensor = torch.Tensor
StepFn = Callable[[Tensor, Tensor], Tensor]


def _check(max_length: int, beam: int = 1) -> None:
    if max_length < 1:
        raise InputError(f"max_length must be at least 1, got {max_length}")
    if beam < 1:
        raise InputError(f"beam must be at least 1, got {beam}")


def _strip(seq: list[int], eot: int) -> list[int]:
    return seq[: seq.index(eot)] if eot in seq else seq


def greedy(step: StepFn, n: int, sot: int, eot: int, max_length: int) -> list[list[int]]:
    """The most likely next token at every step, for ``n`` images at once; finished captions stop growing."""
    _check(max_length)
    tokens = torch.full((n, 1), sot, dtype=torch.long)
    rows = torch.arange(n)
    out: list[list[int]] = [[] for _ in range(n)]
    for _ in range(max_length):
        nxt = step(tokens, rows).argmax(-1)
        for r, t in zip(rows.tolist(), nxt.tolist()):
            out[r].append(t)
        alive = nxt != eot
        if not alive.any():
            break
        tokens, rows = torch.cat([tokens[alive], nxt[alive, None]], dim=1), rows[alive]
    return [_strip(seq, eot) for seq in out]


def beam_search(step: StepFn, n: int, sot: int, eot: int, max_length: int, beam: int = 3, length_penalty: float = 0.0) -> list[list[int]]:
    """Beam search (``beam`` prefixes per image, summed log-probabilities); a finished prefix keeps its score
    and is ranked by ``score / length ** length_penalty`` (0: the plain sum). ``beam=1`` is greedy."""
    _check(max_length, beam)
    out = []
    for image in range(n):  # one image at a time: the beams of one image are one batch
        prefixes = torch.full((1, 1), sot, dtype=torch.long)
        scores = torch.zeros(1)
        done: list[tuple[float, list[int]]] = []
        for length in range(1, max_length + 1):
            logp = step(prefixes, torch.full((len(prefixes),), image, dtype=torch.long)).float()
            total = (scores[:, None] + logp).flatten()
            best = torch.topk(total, min(beam * 2, total.numel())).indices
            keep_prefix, keep_score = [], []
            for flat in best.tolist():
                src, token = divmod(flat, logp.shape[1])
                seq = prefixes[src, 1:].tolist() + [token]
                if token == eot or length == max_length:
                    done.append((float(total[flat]) / (len(seq) ** length_penalty), seq))
                else:
                    keep_prefix.append(torch.cat([prefixes[src], torch.tensor([token])]))
                    keep_score.append(total[flat])
                if len(keep_prefix) == beam:
                    break
            best_done = max((s for s, _ in done), default=float("-inf"))
            if not keep_prefix or (length_penalty == 0 and len(done) >= beam and best_done >= max(float(s) for s in keep_score)):
                break  # summed log-probabilities only fall: no open prefix can overtake the best finished one
            prefixes, scores = torch.stack(keep_prefix), torch.stack(keep_score)
        out.append(_strip(max(done, key=lambda d: d[0])[1], eot) if done else [])
    return out
