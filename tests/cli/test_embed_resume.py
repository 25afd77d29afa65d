"""``cliplab embed`` resumes by default: a run killed with SIGKILL after its first chunk is on disk,
rerun with the same command (no --cache-dir), computes only what it had not finished."""

from __future__ import annotations

import os
import signal
import sys
import textwrap

import pytest

from cliplab.features import Features

# The command runs in a child process as a user would run it; the child only slows the encoder down
# (so the test can kill it part-way) and makes chunks small (4 images instead of 1024).
CHILD = textwrap.dedent(
    """
    import functools, sys, time
    import cliplab.features
    from cliplab.models.base import Model

    inner = Model.encode_pixels_async
    def slow(self, pixels):
        time.sleep(0.2)
        return inner(self, pixels)
    Model.encode_pixels_async = slow
    cliplab.features.embed = functools.partial(cliplab.features.embed, chunk_size=4)
    from cliplab.cli import main
    sys.argv = ["cliplab", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_embed_command_resumes_from_the_default_cache(cli, private_cache_home, tmp_path, kill_after_chunks):
    args = ["embed", "--model", "tiny", "--images", "synthetic:24:5", "--out", str(tmp_path / "out"),
            "--batch-size", "4", "--workers", "0", "--no-progress"]  # fmt: skip
    cache = private_cache_home / "cliplab" / "embeddings"
    env = {**os.environ, "XDG_CACHE_HOME": str(private_cache_home), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = kill_after_chunks([sys.executable, "-c", CHILD, *map(str, args)], cache, 1, env=env)
    assert not (tmp_path / "out" / "features.json").exists()
    assert 4 <= done < 24

    again = cli(*args)  # the very same command
    assert again.exit_code == 0, again.output
    assert f"cache hits {done} of 24" in again.stdout
    feats = Features.load(tmp_path / "out")
    assert len(feats) == 24 and feats.stats["cache_hits"] == done and feats.stats["cache_misses"] == 24 - done
