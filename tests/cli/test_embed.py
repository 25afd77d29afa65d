"""``cliplab embed``."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from cliplab.data.sources import open_source
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
    assert "embedded 6 images (32 dims)" in first.stdout and "skipped" not in first.stderr and "cache hits 0 of 6" in first.stdout
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


def test_skipped_images_are_listed_in_a_csv(cli, model_args, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (20, 20), "red").save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"not an image at all")
    result = cli("embed", *model_args, "--images", folder, "--out", tmp_path / "f", *FAST)
    assert result.exit_code == 0, result.output
    listed = (tmp_path / "f" / "skipped.csv").read_text().splitlines()
    assert listed[0] == "kind,where,reason" and listed[1] == f"image,{folder / 'broken.png'},not an image"
    assert f"1 of 2 images skipped (1 not an image); list in {tmp_path / 'f' / 'skipped.csv'}" in result.stderr


@pytest.mark.parametrize("spec", ["synthetic:0", "nonimg"])
def test_nothing_embedded_exits_2(cli, model_args, tmp_path, spec):
    if spec == "nonimg":
        (tmp_path / "nonimg").mkdir()
        (tmp_path / "nonimg" / "a.png").write_bytes(b"text")
        spec = tmp_path / "nonimg"
    result = cli("embed", *model_args, "--images", spec, "--out", tmp_path / "f", *FAST)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nothing embedded from")
    assert not (tmp_path / "f").exists()


def test_manifest_options_and_conflicts(cli, model_args, tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 20), "red").save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("file,name,kind\na.png,x,circle\na.png,y,star\n")
    base = ["embed", *model_args, "--images", tmp_path / "m.csv", "--label-col", "kind", *FAST]
    clash = cli(*base, "--out", tmp_path / "f")
    assert clash.exit_code == 2
    assert "'a.png' is 'circle' on line 2 but 'star' on line 3" in clash.stderr and "--on-conflict first" in clash.stderr
    kept = cli(*base, "--on-conflict", "first", "--out", tmp_path / "g")
    assert kept.exit_code == 0, kept.output
    assert Features.load(tmp_path / "g").labels == ["circle"]
    assert "2 rows -> 1 images" in kept.stderr and "conflicting labels" in kept.stderr
    wrong = cli("embed", *model_args, "--images", "synthetic:2", "--image-col", "x", "--out", tmp_path / "h", *FAST)
    assert wrong.exit_code == 2 and "--image-col applies to manifests" in wrong.stderr
    missing_col = cli("embed", *model_args, "--images", tmp_path / "m.csv", "--image-col", "nope", "--out", tmp_path / "i", *FAST)
    assert missing_col.exit_code == 2 and "--image-col nope is not a column" in missing_col.stderr


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


def test_a_stray_image_is_kept_unlabelled_and_said_once(cli, model_args, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    for i, rel in enumerate(["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png", "stray.png"]):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (40 * i, 200 - 30 * i, 90)).save(folder / rel)
    result = cli("embed", *model_args, "--images", folder, "--out", tmp_path / "f", *FAST)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("'stray.png'") == 1 and "left out of labelled tasks" in result.stderr
    feats = Features.load(tmp_path / "f")
    assert len(feats) == 5 and feats.labels[feats.ids.index(str(folder / "stray.png"))] is None
    heads_use = feats.labelled()  # what a head fitted on labels takes
    assert heads_use.labels == ["cat", "cat", "dog", "dog"] and heads_use.y.tolist() == [0, 0, 1, 1]
    assert str(folder / "stray.png") not in heads_use.ids


def test_shard_members_that_are_not_files_are_listed_in_skipped_csv(cli, model_args, tmp_path):
    import io
    import tarfile

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(buf, "PNG")
    with tarfile.open(tmp_path / "s.tar", "w") as tf:
        for name, kind, link in [("a.png", tarfile.REGTYPE, ""), ("b.png", tarfile.LNKTYPE, "a.png"), ("c.png", tarfile.SYMTYPE, "a.png")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(buf.getvalue()) if kind == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(buf.getvalue()) if kind == tarfile.REGTYPE else None)
    result = cli("embed", *model_args, "--images", tmp_path / "s.tar", "--out", tmp_path / "f", *FAST)
    assert result.exit_code == 0, result.output
    assert Features.load(tmp_path / "f").ids == [f"{tmp_path / 's.tar'}#a", f"{tmp_path / 's.tar'}#b"]
    listed = (tmp_path / "f" / "skipped.csv").read_text().splitlines()
    assert listed == ["kind,where,reason", f"image,{tmp_path / 's.tar'}#c.png,symbolic link member (not followed)"]


@pytest.mark.slow
def test_engine_ray_keeps_rays_info_lines_and_deprecations_quiet(tmp_path):
    import os
    import subprocess
    import sys

    pytest.importorskip("ray")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_DATA_LOG_LEVEL", None)
    run = subprocess.run(
        [sys.executable, "-m", "cliplab", "embed", "--images", "synthetic:6", "--model", "tiny", "--engine", "ray",
         "--no-progress", "--out", str(tmp_path / "f")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "embedded 6 images" in run.stdout
    noisy = [line for line in run.stderr.splitlines() if " INFO " in line or "deprecated" in line.lower()]
    assert noisy == []


def test_decoding_on_the_device_shows_no_torchvision_notice(cli, model_args, tmp_path):
    """torchvision's notice that its decoders are deprecated is for cliplab's developers, not its users."""
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (60 * i, 20, 90)).save(tmp_path / "imgs" / f"a{i}.jpg")
    ok = cli("embed", *model_args, "--images", tmp_path / "imgs", "--decode", "gpu", "--out", tmp_path / "f", *FAST)
    assert ok.exit_code == 0, ok.output
    assert Features.load(tmp_path / "f").stats["decode"] == "gpu"
    assert "warning" not in ok.stderr


def test_layers_embed_multi_level_features_under_their_own_cache_key(cli, model_args, tiny_model, tmp_path):
    cache = ["--cache-dir", tmp_path / "cache"]
    plain = cli("embed", *model_args, "--images", "synthetic:4:3", *cache, *FAST, "--out", tmp_path / "plain")
    multi = cli("embed", *model_args, "--images", "synthetic:4:3", *cache, *FAST, "--layers", "-1,-2", "--out", tmp_path / "multi")
    assert plain.exit_code == 0 and multi.exit_code == 0, multi.output
    assert "embedded 4 images (128 dims)" in multi.stdout and "cache hits 0 of 4" in multi.stdout  # 2 layers x width 64
    feats = Features.load(tmp_path / "multi")
    images = [Image.open(BytesIO(item.read_bytes())) for item in open_source("synthetic:4:3").items]
    np.testing.assert_allclose(feats.X, tiny_model.encode_images(images, layers=[-1, -2]), atol=1e-5)
    assert feats.identity == tiny_model.multilevel([-1, -2]).identity
    grid = cli("embed", *model_args, "--images", "synthetic:4:3", *cache, *FAST, "--layers", "-1", "--tokens", "cls+grid2", "--out", tmp_path / "grid")
    assert grid.exit_code == 0 and "(320 dims)" in grid.stdout and "cache hits 0 of 4" in grid.stdout
    again = cli("embed", *model_args, "--images", "synthetic:4:3", *cache, *FAST, "--layers", "-1,-2", "--out", tmp_path / "again")
    assert "cache hits 4 of 4" in again.stdout


@pytest.mark.parametrize(
    ("extra", "words"),
    [(["--layers", "5"], "--layers: 5 is not a block"), (["--layers", "a,b"], "--layers a,b"),
     (["--tokens", "cls+mean"], "--tokens applies with --layers"), (["--layers", "-1", "--tokens", "patch"], "--tokens patch")],
)
def test_bad_layers_and_tokens_are_one_line(cli, model_args, tmp_path, extra, words):
    result = cli("embed", *model_args, "--images", "synthetic:2", *FAST, *extra, "--out", tmp_path / "f")
    assert result.exit_code == 2 and words in result.stderr, result.output
