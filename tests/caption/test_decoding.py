"""Greedy and beam decoding over scripted next-token distributions: known answers."""

from __future__ import annotations

import math

import pytest
import torch

from cliplab.caption.decoding import beam_search, greedy
from cliplab.errors import InputError

SOT, EOT, V = 0, 1, 6


def scripted(table: dict[tuple[int, ...], dict[int, float]]):
    """A step function whose next-token probabilities depend on the prefix (after SOT) only;
    a prefix not in ``table`` puts all mass on token 5."""

    def step(tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(tokens), V), -1e9)
        for i, prefix in enumerate(tokens.tolist()):
            for token, p in table.get(tuple(prefix[1:]), {5: 1.0}).items():
                out[i, token] = math.log(p)
        return out

    return step


def test_greedy_stops_at_end_of_text():
    step = scripted({(): {2: 0.9, 3: 0.1}, (2,): {3: 0.8, EOT: 0.2}, (2, 3): {EOT: 0.7, 4: 0.3}})
    assert greedy(step, 2, SOT, EOT, max_length=10) == [[2, 3], [2, 3]]


@pytest.mark.parametrize("max_length", [1, 2, 3, 7])
def test_decoding_respects_max_length(max_length):
    step = scripted({})  # never ends: token 5 forever
    assert greedy(step, 3, SOT, EOT, max_length) == [[5] * max_length] * 3
    assert beam_search(step, 2, SOT, EOT, max_length, beam=3) == [[5] * max_length] * 2


def test_beam_search_finds_the_likelier_caption_greedy_misses():
    # greedy takes 2 (0.6) then 4 (0.55): 0.33; beam keeps 3 (0.4) -> 4 (1.0) -> EOT: 0.4
    table = {(): {2: 0.6, 3: 0.4}, (2,): {4: 0.55, 5: 0.45}, (2, 4): {EOT: 1.0}, (2, 5): {EOT: 1.0}, (3,): {4: 1.0}, (3, 4): {EOT: 1.0}}
    step = scripted(table)
    assert greedy(step, 1, SOT, EOT, 10) == [[2, 4]]
    assert beam_search(step, 1, SOT, EOT, 10, beam=2) == [[3, 4]]
    assert beam_search(step, 1, SOT, EOT, 10, beam=1) == greedy(step, 1, SOT, EOT, 10)


def test_an_immediate_end_gives_an_empty_caption_and_bad_limits_fail():
    step = scripted({(): {EOT: 1.0}})
    assert greedy(step, 1, SOT, EOT, 5) == [[]] and beam_search(step, 1, SOT, EOT, 5, beam=2) == [[]]
    with pytest.raises(InputError, match="max_length"):
        greedy(step, 1, SOT, EOT, 0)
    with pytest.raises(InputError, match="beam"):
        beam_search(step, 1, SOT, EOT, 5, beam=0)
