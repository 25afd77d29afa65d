"""The Features container: alignment, subsetting, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cliplab.data.items import Skipped
from cliplab.features import Features, FeaturesFileError


def sample(n=6, d=4) -> Features:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Features(
        X=X,
        ids=[f"img{i}" for i in range(n)],
        labels=["cat" if i % 2 else "dog" for i in range(n)],
        captions=[[f"caption {i}"] if i % 3 else [] for i in range(n)],
        meta=[{"i": i, "name": f"n{i}"} for i in range(n)],
        classes=["cat", "dog"],
        skipped=[Skipped("bad.jpg", "truncated")],
        stats={"cache_hits": 0, "cache_misses": n, "images_per_s": 12.5},
        model="test:tiny",
        identity="test:tiny|sha256=abc",
    )


def test_save_load_roundtrip(tmp_path):
    f = sample()
    f.save(tmp_path / "feats")
    g = Features.load(tmp_path / "feats")
    np.testing.assert_array_equal(g.X, f.X)
    assert g.X.dtype == np.float32
    for name in ("ids", "labels", "captions", "meta", "classes", "skipped", "stats", "model", "identity"):
        assert getattr(g, name) == getattr(f, name), name
    assert not list((tmp_path / "feats").glob(".tmp-*"))


def test_save_load_without_optional_fields(tmp_path):
    f = Features(X=np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
    g = Features.load(f.save(tmp_path / "f"))
    assert g.labels is None and g.captions is None and g.meta is None and g.ids == ["a", "b", "c"]


def test_overwrite_and_mismatch_detection(tmp_path):
    f = sample()
    f.save(tmp_path / "f")
    f[:3].save(tmp_path / "f")  # overwriting is fine
    assert len(Features.load(tmp_path / "f")) == 3
    other = tmp_path / "other"
    f.save(other)
    (tmp_path / "f" / "features.safetensors").write_bytes((other / "features.safetensors").read_bytes())
    with pytest.raises(FeaturesFileError, match="does not match"):
        Features.load(tmp_path / "f")
    with pytest.raises(FeaturesFileError, match="not found"):
        Features.load(tmp_path / "nowhere")


def test_mask_index_and_slice_keep_rows_aligned():
    f = sample()
    mask = np.array([True, False, True, False, False, True])
    g = f[mask]
    assert g.ids == ["img0", "img2", "img5"]
    assert g.labels == ["dog", "dog", "cat"]
    assert g.meta == [{"i": 0, "name": "n0"}, {"i": 2, "name": "n2"}, {"i": 5, "name": "n5"}]
    np.testing.assert_array_equal(g.X, f.X[mask])
    assert f[[4, 1]].ids == ["img4", "img1"]
    assert f[1:3].ids == ["img1", "img2"]
    assert f[np.array([], dtype=int)].X.shape == (0, 4)
    assert f.select_ids(["img3", "img0"]).labels == ["cat", "dog"]
    assert list(f.y) == [1, 0, 1, 0, 1, 0]
    with pytest.raises(IndexError):
        f[np.array([True, False])]
    with pytest.raises(KeyError, match="nope"):
        f.select_ids(["nope"])


def test_rejects_misaligned_fields():
    with pytest.raises(ValueError, match="labels has 2 entries"):
        Features(X=np.zeros((3, 2), np.float32), ids=["a", "b", "c"], labels=["x", "y"])


def test_manifest_is_plain_json(tmp_path):
    sample().save(tmp_path / "f")
    manifest = json.loads((tmp_path / "f" / "features.json").read_text())
    assert manifest["matrix"]["shape"] == [6, 4] and manifest["ids"][0] == "img0"


def test_a_rerun_removes_what_a_killed_save_left_and_nothing_else(tmp_path):
    out = tmp_path / "f"
    out.mkdir()
    leftovers = [".features.json.k2_x9abc.tmp", ".features.safetensors.0a1b2c3d.tmp", ".skipped.csv.zz99yy88.tmp"]
    others = [".features.json.tmp", ".features.json.notours!.tmp", "features.json.abcdefgh.tmp", "mine.txt"]
    for name in leftovers + others:
        (out / name).write_text("x")
    feats = Features(X=np.eye(2, dtype=np.float32), ids=["a", "b"], skipped=[Skipped("c", "truncated")])
    feats.save(out)
    feats.save_skipped(out / "skipped.csv")
    assert sorted(p.name for p in out.iterdir()) == sorted(others + ["features.json", "features.safetensors", "skipped.csv"])
