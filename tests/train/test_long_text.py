"""Long-CLIP stretching: the first 20 rows kept exactly, 4x interpolation, and a stretched model
that encodes, saves and loads 248-token text."""

import numpy as np
import pytest
import torch

from cliplab.models import load_model
from cliplab.train.long_text import stretch_model, stretch_positions


def test_77_positions_become_248_with_the_first_20_kept_exactly():
    table = torch.randn(77, 8)
    out = stretch_positions(table)
    assert out.shape == (248, 8)
    assert torch.equal(out[:20], table[:20])
    # interpolation: row 20 + 4i + j = (4-j)/4 pe[20+i] + j/4 pe[21+i]
    i, j = 10, 3
    assert torch.allclose(out[20 + 4 * i + j], (4 - j) / 4 * table[20 + i] + j / 4 * table[21 + i])
    assert torch.equal(out[20 + 4 * i], table[20 + i])  # j = 0 hits a source row
    # the last four extrapolate from the last two source rows
    assert torch.allclose(out[244 + 2], table[76] + 0.5 * (table[76] - table[75]))


def test_stretched_model_encodes_saves_and_loads_long_text(tmp_path):
    from safetensors.torch import save_file

    model = load_model("tiny", device="cpu")
    first = model.text_positional_embedding().detach()[:20].clone()
    stretch_model(model)
    n = 4 * 48 - 3 * 20
    assert model.context_length == n == model.tokenize(["a"]).shape[1]
    assert torch.equal(model.text_positional_embedding()[:20], first)
    long_text = " and ".join(["a small red star at the top left"] * 12)  # about 110 tokens
    assert 48 < model.token_counts([long_text])[0] <= n
    before = model.encode_texts([long_text, "a red star"])
    # truncating at the old length would change the embedding: the end of the text is read
    assert model.torch_module.attn_mask.shape == (n, n)
    path = tmp_path / "long.safetensors"
    save_file({k: v.contiguous() for k, v in model.torch_module.state_dict().items()}, str(path))
    again = load_model("tiny", pretrained=path, device="cpu")
    assert again.context_length == n
    np.testing.assert_allclose(again.encode_texts([long_text, "a red star"]), before, atol=1e-6)


def test_first_rows_stay_frozen_under_training():
    model = load_model("tiny", device="cpu")
    stretch_model(model)
    table = model.text_positional_embedding()
    loss = model.torch_module.encode_text(model.tokenize(["a red star " * 40])).sum()
    loss.backward()
    assert torch.count_nonzero(table.grad[:20]) == 0 and torch.count_nonzero(table.grad[20:]) > 0


def test_too_short_a_table_is_refused():
    from cliplab.errors import InputError

    with pytest.raises(InputError):
        stretch_positions(torch.randn(20, 4))
