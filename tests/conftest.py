"""Fixtures shared by every test folder.

``tiny_model``: a random-init tiny open_clip CLIP, loaded through ``load_model`` exactly as a user's
checkpoint would be: an architecture registered with open_clip (``TINY_ARCH``) plus a weights file.
``tiny_model_files`` gives the spec and the file, for CLI tests (``--model SPEC --pretrained FILE``).
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

# Where PYTHONDONTWRITEBYTECODE is set (CI's image sets it), every xdist worker, both tiers and every
# `python -m cliplab` a test starts would compile cliplab and rewrite the tests anew: let the first
# process write the bytecode caches that the others read.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the workers share the cores: one torch thread pool per core, not one per worker per core
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))



def pytest_configure(config: pytest.Config) -> None:
    """At exit pytest runs five full garbage collections to find unraisable exceptions: over torch's heap
    that is about 4 s per process (each xdist worker, each tier). One finds what the tests leave."""
    from _pytest.unraisableexception import gc_collect_iterations_key

    config.stash[gc_collect_iterations_key] = 1


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    """``-m slow`` (the slow tier) imports only the test files that mention the marker: collecting the
    other hundred files would cost each worker seconds of imports to select nothing."""
    if config.getoption("markexpr") == "slow" and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return "mark.slow" not in collection_path.read_text(encoding="utf-8") or None
    return None


TINY_ARCH = "cliplab-test-tiny"
TINY_ARCH_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> dict:
    """``{"spec": "openclip:cliplab-test-tiny", "weights": Path}``: the architecture is registered with
    open_clip for this process and seeded random weights (perturbed, so no tensor is degenerate)
    are saved as safetensors."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-model")
    cfg_path = folder / f"{TINY_ARCH}.json"
    cfg_path.write_text(json.dumps(TINY_ARCH_CFG))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    module = open_clip.CLIP(**TINY_ARCH_CFG)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    weights = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    return {"spec": f"openclip:{TINY_ARCH}", "weights": weights}


@pytest.fixture(scope="session")
def tiny_model(tiny_model_files):
    """A tiny random-init CLIP on the CPU behind the ``Model`` interface (embed_dim 32, 32 px images)."""
    from cliplab.models import load_model

    return load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """This CPU as one whose flags show avx512_bf16, so ``--precision auto`` picks bf16 as on a user's CPU."""
    from cliplab.models import precision

    simulated = precision.CpuInfo("simulated CPU with avx512_bf16", 2, frozenset({"avx2", "avx512_bf16"}))
    monkeypatch.setattr(precision, "cpu_info", lambda: simulated)


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path_factory, monkeypatch):
    """Every test gets its own ``XDG_CACHE_HOME``, so the default embedding cache
    (``$XDG_CACHE_HOME/cliplab/embeddings``) never lands in the user's ~/.cache nor leaks between tests."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
def kill_after_chunks():
    """``kill_after_chunks(argv, cache, n, env=None)``: start ``argv``, SIGKILL it once ``cache`` holds
    ``n`` embedding chunks (within 120 s), and return how many images those chunks hold (4 per chunk
    in the resume tests)."""
    import os
    import signal
    import subprocess
    import time

    def run(argv, cache, n: int, env=None) -> int:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while len(list(cache.glob("*/chunk-*.safetensors"))) < n:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the child wrote no chunk in time"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        return 4 * len(list(cache.glob("*/chunk-*.safetensors")))

    return run


@pytest.fixture(scope="session")
def app():
    """The Typer app with every command registered."""
    from cliplab.cli import _register
    from cliplab.cli import app as cliplab_app

    _register()
    return cliplab_app


@pytest.fixture(scope="session")
def cli(app):
    """``cli(*args)`` -> click Result; stdout in ``.stdout``, stderr in ``.stderr``. The click command is
    built from the app once, as ``cliplab`` does per process (typer's runner rebuilds it per call: 0.12 s)."""
    import typer.testing

    command = typer.main.get_command(app)
    runner = typer.testing.CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", lambda typer_app: command if typer_app is app else typer.main.get_command(typer_app))
        yield lambda *args: runner.invoke(app, [str(a) for a in args])
