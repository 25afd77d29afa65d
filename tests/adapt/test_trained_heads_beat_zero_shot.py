"""Quality check (the slow tier): the trained heads (prompt learning, singular values) beat zero-shot at
16 shots on the position task of ``test_beats_zero_shot.py``, in a file of their own so the slow tier
runs them beside the fixed heads."""

from __future__ import annotations

import pytest

from .test_beats_zero_shot import assert_heads_beat_zero_shot

pytestmark = pytest.mark.slow


def test_trained_heads_beat_zero_shot_at_16_shots(bundled):
    assert_heads_beat_zero_shot(bundled, ("coop", "cocoop", "svd"))
