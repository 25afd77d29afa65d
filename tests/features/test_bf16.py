"""bf16 (weights and inputs cast) on the CPU gives embeddings within cosine 0.999 of fp32, in their own cache namespace.

The check is about numerics, so it runs whether or not the CPU has native bf16 instructions (without
them oneDNN emulates bf16: slower, same rounding); it is skipped only if bf16 autocast is unavailable.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliplab.features import embed


def bf16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4))
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not bf16_autocast_works(), reason="bf16 autocast is not available on this CPU build")
def test_bf16_embeddings_are_within_cosine_0999_of_fp32(make_tiny, folder, tmp_path):
    fp32 = embed(make_tiny("fp32"), folder, cache_dir=tmp_path / "c", num_workers=0, progress=False)
    bf16 = embed(make_tiny("bf16"), folder, cache_dir=tmp_path / "c", num_workers=0, progress=False)
    assert bf16.stats["precision"] == "bf16" and bf16.stats["cache_hits"] == 0  # its own cache namespace
    assert bf16.X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bf16.X, axis=1), 1.0, atol=1e-5)
    cos = (fp32.X * bf16.X).sum(axis=1)
    assert cos.min() >= 0.999, cos.min()
    assert not np.array_equal(fp32.X, bf16.X)  # bf16 really ran
