"""The one atomic writer: unique temporary names, no partial files, permissions from the umask."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from cliplab.errors import InputError
from cliplab.features import Features
from cliplab.files import atomic_folder, atomic_target, atomic_write, write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_writes_replace_whole_files_with_umask_permissions(tmp_path, umask_022):
    path = atomic_write(tmp_path / "sub" / "a.txt", "hello")
    assert path.read_text() == "hello" and stat.S_IMODE(path.stat().st_mode) == 0o644
    write_json({"x": np.arange(3), "p": tmp_path}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": [0, 1, 2], "p": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "sub"]  # no temporary left


def test_features_files_are_readable_by_others(tmp_path, umask_022):
    Features(X=np.eye(2, dtype=np.float32), ids=["a", "b"]).save(tmp_path / "f")
    for name in ("features.safetensors", "features.json"):
        assert stat.S_IMODE((tmp_path / "f" / name).stat().st_mode) == 0o644


def test_a_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_target(tmp_path / "keep.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    with pytest.raises(TypeError):
        write_json({"bad": object()}, tmp_path / "x.json")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_output_paths_in_the_way_are_one_line(tmp_path):
    (tmp_path / "ok.png").write_text("x")
    with pytest.raises(InputError, match="ok.png exists and is a file, not a folder"):
        atomic_write(tmp_path / "ok.png" / "r.json", "{}")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="exists and is a folder"):
        atomic_write(tmp_path / "d", "x")


def test_atomic_folder(tmp_path):
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    with pytest.raises(InputError, match="not empty"):
        with atomic_folder(tmp_path / "out"):
            pass
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "new"):
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_umask_is_read_not_changed(tmp_path, umask_022, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or 0o022)
    path = atomic_write(tmp_path / "a.txt", "x")
    with atomic_folder(tmp_path / "d") as tmp:
        (tmp / "f").write_text("y")
    assert calls == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_the_umask_in_force_sets_the_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
