"""An index folder on disk: saves are all-or-nothing (killed at any rename, or on a full disk), a folder
whose parts disagree is refused in one line, and a save cleans what an interrupted one left."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import features_of, unit_rows

# Runs cliplab commands in forked children of one process (one interpreter start for all of them):
# a job may SIGKILL its child just before or after the n-th os.replace (the renames that publish a
# file), or cap the size of the files it writes (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it fails
# with EFBIG, as on a full disk). Prints each child's exit status (-9: killed).
RUNNER = r"""
import json, os, resource, signal, sys, traceback
from cliplab.cli import _register, main
import cliplab.search
_register()  # everything imported before forking; OMP_NUM_THREADS=1: no thread pool to break

def kill_at(point):
    when, n = point.split(":")
    real, calls = os.replace, [0]
    def replace(src, dst):
        calls[0] += 1
        if when == "before" and calls[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
        if when == "after" and calls[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace

def child(job):
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if "kill" in job:
        kill_at(job["kill"])
    if "fsize" in job:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["fsize"], job["fsize"]))
    sys.argv = ["cliplab", *job["argv"]]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

codes = []
for job in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        try:
            child(job)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(70)
    _, status = os.waitpid(pid, 0)
    codes.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
print(json.dumps(codes))
"""


def run_jobs(jobs: list[dict], tmp_path) -> list[tuple[int, str]]:
    """(exit status, output) of each job: ``{"argv": [...], "kill": "before:N" | "after:N", "fsize": bytes}``."""
    for i, job in enumerate(jobs):
        job["argv"] = [str(a) for a in job["argv"]]
        job["log"] = str(tmp_path / f"job-{i}.log")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    return [(code, open(job["log"]).read()) for code, job in zip(codes, jobs)]


def saved(tmp_path, name: str, X: np.ndarray, prefix: str):
    return features_of(X, prefix).save(tmp_path / name)


def holds(folder, X: np.ndarray, ids: list[str]) -> bool:
    """``folder`` loads, has one metadata row per vector, and is exactly these vectors under these ids."""
    from cliplab.search import SearchIndex

    index = SearchIndex.load(folder, read_only=True)
    try:
        if len(index) != len(ids) or len(index.metadata) != len(index):
            return False
        top = [hits[0] for hits in index.search(X, 1)]
        return [h["id"] for h in top] == ids and all(h["score"] > 0.999 for h in top)
    finally:
        index.close()


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory):
    """Two collections of the same size (so counts match) with different vectors and ids."""
    tmp_path = tmp_path_factory.mktemp("collections")
    old, new = unit_rows(300, 16, seed=1), unit_rows(300, 16, seed=2)
    return (old, [f"a{i}" for i in range(300)], saved(tmp_path, "old", old, "a")), (new, [f"b{i}" for i in range(300)], saved(tmp_path, "new", new, "b"))


KILL_POINTS = ["before:1", "before:2", "before:3", "after:3"]  # the renames of the vectors, the metadata, index.json
FULL_DISK = 8_000  # bytes a file may grow to: less than the 300 x 16 float32 vectors (19 KB)


@pytest.fixture(scope="module")
def interrupted(cli, old_and_new, tmp_path_factory):
    """Indexes of the old collection, each hit by one job; all jobs run in one process start.

    ``{(command, point): (folder, exit status, output)}`` for command ``build`` (the new collection
    over the index) or ``add`` (the new collection added to it) and point a kill point or ``full disk``.
    """
    (_, _, old_dir), (_, _, new_dir) = old_and_new
    tmp_path = tmp_path_factory.mktemp("interrupted")
    keys, jobs = [], []
    for command in ("build", "add"):
        for point in [*KILL_POINTS, "full disk"]:
            out = tmp_path / f"{command}-{len(jobs)}"
            assert cli("index", "build", "--features", old_dir, "--out", out).exit_code == 0
            argv = ["index", "build", "--features", new_dir, "--out", out] if command == "build" else ["index", "add", out, "--features", new_dir]
            jobs.append({"argv": argv, **({"fsize": FULL_DISK} if point == "full disk" else {"kill": point})})
            keys.append((command, point, out))
    return {(c, p): (out, *result) for (c, p, out), result in zip(keys, run_jobs(jobs, tmp_path))}


@pytest.mark.slow  # one interpreter start for all interrupted runs (~10 s CPU, more on a busy machine)
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_build_over_an_index_killed_at_any_rename_leaves_the_old_index_or_the_new_one(cli, old_and_new, interrupted, point):
    (old, old_ids, _), (new, new_ids, new_dir) = old_and_new
    out, code, output = interrupted["build", point]
    assert code == -9, output
    assert holds(out, old, old_ids) or holds(out, new, new_ids)
    if point == "after:3":
        assert holds(out, new, new_ids)
    again = cli("index", "build", "--features", new_dir, "--out", out)
    assert again.exit_code == 0, again.output
    assert holds(out, new, new_ids)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # what the killed build left is gone


@pytest.mark.slow  # one interpreter start for all interrupted runs (~10 s CPU, more on a busy machine)
@pytest.mark.parametrize("point", KILL_POINTS)
def test_an_add_killed_at_any_rename_leaves_the_index_as_it_was_or_grown_and_a_retry_completes(cli, old_and_new, interrupted, point):
    (old, old_ids, _), (new, new_ids, new_dir) = old_and_new
    out, code, output = interrupted["add", point]
    assert code == -9, output
    if holds(out, old, old_ids):
        retry = cli("index", "add", out, "--features", new_dir)
        assert retry.exit_code == 0, retry.output
    assert holds(out, np.concatenate([old, new]), old_ids + new_ids)


@pytest.mark.slow  # one interpreter start for all interrupted runs (~10 s CPU, more on a busy machine)
@pytest.mark.parametrize("command", ["build", "add"])
def test_a_full_disk_is_one_line_and_leaves_the_index_unchanged(old_and_new, interrupted, command):
    (old, old_ids, _), _ = old_and_new
    out, code, output = interrupted[command, "full disk"]
    assert code == 2, output
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1].startswith("error: cannot write") and "disk space" in output, output
    assert holds(out, old, old_ids)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("harm", ["missing", "damaged", "other rows"])
def test_an_index_whose_metadata_is_missing_damaged_or_disagrees_is_refused_in_one_line(tmp_path, cli, old_and_new, harm):
    (_, _, old_dir), (_, _, new_dir) = old_and_new
    out, other = tmp_path / "ix", tmp_path / "other"
    assert cli("index", "build", "--features", old_dir, "--out", out).exit_code == 0
    metadata = next(out.glob("metadata*.sqlite"))
    if harm == "missing":
        metadata.unlink()
    elif harm == "damaged":
        metadata.write_bytes(b"not a database" * 100)
    else:
        small = features_of(unit_rows(10, 16, seed=3), "c").save(tmp_path / "small")
        assert cli("index", "build", "--features", small, "--out", other).exit_code == 0
        metadata.write_bytes(next(other.glob("metadata*.sqlite")).read_bytes())
    for args in (("index", "add", out, "--features", new_dir), ("search", out, "x")):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "build the index again" in result.stderr
    assert not metadata.exists() if harm == "missing" else metadata.is_file()  # nothing created or replaced


def test_a_save_removes_the_temporary_files_an_interrupted_one_left_and_nothing_else(tmp_path, cli, old_and_new):
    (old, old_ids, old_dir), _ = old_and_new
    out = tmp_path / "ix"
    assert cli("index", "build", "--features", old_dir, "--out", out).exit_code == 0
    left = [".index.faiss.a1b2c3d4.tmp", ".metadata.sqlite.x_9y8z7w.tmp", ".index.json.qwertyui.tmp"]
    mine = [".notes.tmp", "notes.txt"]
    for name in left + mine:
        (out / name).write_text("x")
    assert cli("index", "build", "--features", old_dir, "--out", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".txt")) == sorted(mine)
    assert holds(out, old, old_ids)


def test_a_build_refuses_an_out_folder_that_is_not_an_index(tmp_path, cli, old_and_new):
    (_, _, old_dir), _ = old_and_new
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"mine")
    result = cli("index", "build", "--features", old_dir, "--out", out)
    assert result.exit_code == 2 and "not a cliplab search index" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cat.jpg"]
