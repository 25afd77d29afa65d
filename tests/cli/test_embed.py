"""``cliplab embed``."""

from __future__ import annotations

import numpy as np

from cliplab.features import Features

FAST = ["--batch-size", "8", "--workers", "0", "--no-progress"]


def test_help(cli):
    result = cli("embed", "--help")
    assert result.exit_code == 0
    for option in ("--images", "--out", "--cache-dir", "--batch-size", "--precision"):
        assert option in result.stdout


def test_embed_saves_features_and_uses_cache(cli, model_args, tiny_model, tmp_path):
    args = ["embed", *model_args, "--images", "synthetic:6:9", "--cache-dir", tmp_path / "cache", *FAST]
    first = cli(*args, "--out", tmp_path / "f1")
    assert first.exit_code == 0, first.output
    assert "embedded 6 images (32 dims)" in first.stdout and "skipped 0" in first.stdout and "cache hits 0 of 6" in first.stdout
    feats = Features.load(tmp_path / "f1")
    assert feats.X.shape == (6, 32) and feats.X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats.X, axis=1), 1, atol=1e-5)
    assert feats.captions is not None and all(len(c) == 1 for c in feats.captions)
    second = cli(*args, "--out", tmp_path / "f2")
    assert second.exit_code == 0 and "cache hits 6 of 6" in second.stdout
    np.testing.assert_allclose(Features.load(tmp_path / "f2").X, feats.X, atol=1e-6)


def test_bf16_and_bad_precision(cli, model_args, tmp_path):
    ok = cli("embed", *model_args, "--images", "synthetic:2", "--precision", "bf16", "--out", tmp_path / "f", *FAST)
    assert ok.exit_code == 0, ok.output
    bad = cli("embed", *model_args, "--images", "synthetic:2", "--precision", "fp8", "--out", tmp_path / "g", *FAST)
    assert bad.exit_code == 2


def test_missing_images_exit_2(cli, model_args, tmp_path):
    result = cli("embed", *model_args, "--images", tmp_path / "none", "--out", tmp_path / "f", *FAST)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


def test_decode_option(cli, model_args, tmp_path):
    for decode in ("cpu", "gpu"):
        ok = cli("embed", *model_args, "--images", "synthetic:3:2", "--decode", decode, "--out", tmp_path / decode, *FAST)
        assert ok.exit_code == 0, ok.output
        assert Features.load(tmp_path / decode).stats["decode"] == decode
    a, b = Features.load(tmp_path / "cpu").X, Features.load(tmp_path / "gpu").X
    assert (a * b).sum(1).min() >= 0.999
    assert cli("embed", *model_args, "--images", "synthetic:3:2", "--decode", "nvjpeg", "--out", tmp_path / "x", *FAST).exit_code == 2
