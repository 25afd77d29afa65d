"""Long-CLIP's knowledge-preserving stretch of the text positional embedding (Zhang et al. 2024, Sec. 3.1).

The first ``keep`` positions (well trained, they carry most of the meaning) are kept exactly;
the rest are linearly interpolated by ``factor``; the last row's neighbours are extrapolated.
From CLIP's 77 positions this gives 4*77 - 3*20 = 248.
"""

from __future__ import annotations

import torch

from cliplab.errors import InputError
from cliplab.models.base import Model

KEEP, FACTOR = 20, 4


def stretch_positions(table: torch.Tensor, keep: int = KEEP, factor: int = FACTOR) -> torch.Tensor:
    """``table`` (L x width) stretched to ``factor * L - (factor - 1) * keep`` rows.

    new[i] = pe[i] for i < keep; for source rows keep+i and keep+i+1,
    new[keep + factor*i + j] = ((factor-j)/factor) pe[keep+i] + (j/factor) pe[keep+i+1];
    the last ``factor`` rows extrapolate from the last two source rows.
    """
    length, _ = table.shape
    if length <= keep + 1:
        raise InputError(f"cannot stretch {length} text positions keeping the first {keep}; it needs more than {keep + 1}")
    rows = [table[:keep]]
    for i in range(length - keep - 1):
        a, b = table[keep + i], table[keep + i + 1]
        rows.append(torch.stack([(factor - j) / factor * a + j / factor * b for j in range(factor)]))
    last, before = table[-1], table[-2]
    rows.append(torch.stack([last + j / factor * (last - before) for j in range(factor)]))
    return torch.cat(rows)


def freeze_first_rows(param: torch.nn.Parameter, keep: int) -> None:
    """Zero the gradient of the first ``keep`` rows, so training leaves them as they were (Long-CLIP
    trains a residual table only on the stretched positions)."""
    param.register_hook(lambda grad: grad.index_fill(0, torch.arange(keep, device=grad.device), 0.0))


def stretch_model(model: Model, keep: int = KEEP, factor: int = FACTOR) -> Model:
    """Stretch ``model``'s text positions in place (context length, mask and tokenizer follow);
    the first ``keep`` rows stay frozen during training."""
    if not hasattr(model, "set_text_positional_embedding"):
        raise InputError(f"{model.name}: Long-CLIP stretching needs a text tower with a learned positional table (open_clip models)")
    table = model.text_positional_embedding().detach()
    model.set_text_positional_embedding(stretch_positions(table, keep, factor))
    freeze_first_rows(model.text_positional_embedding(), keep)
    return model
