"""A run killed with SIGKILL resumes from the chunks it had written, and ends equal to a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
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


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_run_resumes_with_only_the_missing_images(tiny, tiny_weights, tmp_path, counter, add_images):
    folder = tmp_path / "images"
    add_images(folder, 40)
    cache = tmp_path / "cache"
    script = SCRIPT.format(
        tests=str(Path(__file__).parent), weights=str(tiny_weights), folder=str(folder), cache=str(cache), workers=1
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(cache.glob("*/chunk-*.safetensors"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child wrote no chunks in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = 4 * len(list(cache.glob("*/chunk-*.safetensors")))
    assert 12 <= done < 40

    count = counter(tiny)
    resumed = embed(tiny, folder, cache_dir=cache, batch_size=4, num_workers=0, progress=False)
    assert count.images == 40 - done
    assert resumed.stats["cache_hits"] == done
    clean = embed(tiny, folder, batch_size=8, num_workers=0, progress=False, cache_dir=None)
    assert resumed.ids == clean.ids
    np.testing.assert_allclose(resumed.X, clean.X, atol=1e-6)
