"""A run killed with SIGKILL resumes from the chunks it had written, and ends equal to a clean run."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cliplab.features import embed

SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import load_tiny
    from cliplab.features import embed

    model = load_tiny({weights!r})
    inner = model.encode_pixels_async
    def slow(pixels):  # slow enough that the test can kill us part-way
        time.sleep(0.15)
        return inner(pixels)
    model.encode_pixels_async = slow
    embed(model, {folder!r}, cache_dir={cache!r}, batch_size=4, chunk_size=4, num_workers={workers}, progress=False)
    print("finished")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_run_resumes_with_only_the_missing_images(tiny, tiny_weights, tmp_path, counter, add_images, kill_after_chunks):
    folder = tmp_path / "images"
    add_images(folder, 40)
    cache = tmp_path / "cache"
    script = SCRIPT.format(
        tests=str(Path(__file__).parent), weights=str(tiny_weights), folder=str(folder), cache=str(cache), workers=1
    )
    done = kill_after_chunks([sys.executable, "-c", script], cache, 3)
    assert 12 <= done < 40

    count = counter(tiny)
    resumed = embed(tiny, folder, cache_dir=cache, batch_size=4, num_workers=0, progress=False)
    assert count.images == 40 - done
    assert resumed.stats["cache_hits"] == done
    clean = embed(tiny, folder, batch_size=8, num_workers=0, progress=False, cache_dir=None)
    assert resumed.ids == clean.ids
    np.testing.assert_allclose(resumed.X, clean.X, atol=1e-6)
