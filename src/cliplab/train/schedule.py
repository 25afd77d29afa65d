"""Learning-rate schedule: linear warm-up, then cosine decay to zero (open_clip's ``cosine_lr``)."""

from __future__ import annotations

import math


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate at 0-based ``step``: (step+1)/warmup, then half a cosine."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
