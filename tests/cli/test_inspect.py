"""``cliplab inspect fit`` then ``inspect score`` end to end: good synthetic scenes against far-away images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw


def far_away_images(folder, n: int, seed: int = 0) -> None:
    """``n`` each of uniform noise, solid colours and black text on white, 64 px, in subfolders."""
    rng = np.random.default_rng(seed)
    for kind in ("noise", "solid", "text"):
        (folder / kind).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "noise" / f"{i:03d}.png")
        Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 256, 3))).save(folder / "solid" / f"{i:03d}.png")
        page = Image.new("RGB", (64, 64), "white")
        draw = ImageDraw.Draw(page)
        for line in range(5):
            draw.text((2, 2 + 12 * line), "".join(rng.choice(list("abcdefghijklmnop "), 10)), fill="black")
        page.save(folder / "text" / f"{i:03d}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """normal/images: 120 single-object scenes; test/: 30 other scenes in good/ and 10 of each far-away kind."""
    from cliplab.cli.data import write_scenes

    root = tmp_path_factory.mktemp("inspect")
    write_scenes(root / "normal", 120, seed=3, split="test", image_size=64, max_objects=1, class_folders=None, masks=False, progress=False)
    write_scenes(root / "good", 30, seed=4, split="test", image_size=64, max_objects=1, class_folders=None, masks=False, progress=False)
    (root / "test").mkdir()
    (root / "good" / "images").rename(root / "test" / "good")
    far_away_images(root / "test", 10)
    return {"normal": root / "normal" / "images", "test": root / "test"}


def test_fit_then_score_flags_far_away_images(cli, data, tmp_path):
    detector, scores, metrics, report = tmp_path / "det", tmp_path / "scores.csv", tmp_path / "m.json", tmp_path / "r.html"
    result = cli("inspect", "fit", "--normal", data["normal"], "--method", "knn", "--false-alarm", "0.1", "--out", detector, "--no-progress")
    assert result.exit_code == 0, result.output
    info = json.loads((detector / "detector.json").read_text())
    assert info["method"] == "knn" and info["model"]["name"] == "cliplab:shapes-tiny" and info["false_alarm"] == 0.1
    assert (info["n_fit"], info["n_held_out"]) == (96, 24) and info["held_out_false_alarm"] == pytest.approx(2 / 24)
    assert "Most anomalous" in (detector / "report.html").read_text()
    result = cli("inspect", "score", "--images", data["test"], "--detector", detector, "--out", scores,
                 "--metrics", metrics, "--report", report, "--normal-label", "good", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 60 and list(rows[0]) == ["id", "anomaly_score", "flagged"]
    assert all(int(r["flagged"]) == (float(r["anomaly_score"]) > info["threshold"]) for r in rows)
    summary = json.loads(metrics.read_text())
    m = summary["metrics"]
    assert (m["n_normal"], m["n_anomalous"]) == (30, 30) and set(m["apcer_per_kind"]) == {"noise", "solid", "text"}
    assert m["auroc"] >= 0.95, m
    assert f"AUROC {m['auroc']:.4f}" in result.stdout
    html = report.read_text()
    assert "Most anomalous" in html and "Least anomalous" in html and "data:image/png;base64," in html
    # the highest scores are far-away images, the lowest good scenes
    ranked = sorted(rows, key=lambda r: -float(r["anomaly_score"]))
    assert "/good/" not in ranked[0]["id"] and "/good/" in ranked[-1]["id"]


def test_score_refuses_a_detector_of_another_model(cli, data, tmp_path, model_args):
    detector = tmp_path / "det"
    result = cli("inspect", "fit", "--normal", data["normal"], "--method", "gaussian", "--out", detector, "--no-progress", *model_args)
    assert result.exit_code == 0, result.output
    result = cli("inspect", "score", "--images", data["test"], "--detector", detector, "--out", tmp_path / "s.csv", "--no-progress")
    assert result.exit_code == 2 and (tmp_path / "s.csv").exists() is False
    line = result.stderr.strip()
    assert "\n" not in line and "was fitted on embeddings of openclip:cliplab-test-tiny" in line
    assert f"--model openclip:cliplab-test-tiny --pretrained {model_args[-1]} --precision fp32" in line


def test_unlabelled_images_get_scores_and_no_metrics(cli, data, tmp_path, model_args):
    detector = tmp_path / "det"
    assert cli("inspect", "fit", "--normal", data["normal"], "--held-out", data["test"] / "good", "--out", detector,
               "--no-progress", *model_args).exit_code == 0  # fmt: skip
    assert json.loads((detector / "detector.json").read_text())["n_fit"] == 120
    result = cli("inspect", "score", "--images", data["test"] / "noise", "--detector", detector, "--out", tmp_path / "s.csv",
                 "--metrics", tmp_path / "m.json", "--no-progress", *model_args)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] is None
    assert len(list(csv.DictReader((tmp_path / "s.csv").open()))) == 10
    result = cli("inspect", "score", "--images", data["test"], "--detector", detector, "--out", tmp_path / "s2.csv",
                 "--normal-label", "ok", "--no-progress", *model_args)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no metrics: with the good labels ok, the labelled images of --images (labels good, noise, solid" in result.stderr
    assert "AUROC" not in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--method", "svm"], "'svm' is not one of"),
    (["--false-alarm", "1.5"], "--false-alarm must be in (0, 1)"),
    (["--param", "depth=3"], "knn has no parameter 'depth' to set; its parameters are: k (the false-alarm rate is --false-alarm)"),
    (["--param", "k"], "--param takes NAME=VALUE"),
])  # fmt: skip
def test_fit_errors_are_one_line(cli, data, tmp_path, model_args, args, message):
    result = cli("inspect", "fit", "--normal", data["normal"], "--out", tmp_path / "det", "--no-progress", *model_args, *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "det").exists()


def test_score_needs_a_detector_folder(cli, data, tmp_path):
    result = cli("inspect", "score", "--images", data["test"], "--detector", tmp_path, "--out", tmp_path / "s.csv", "--no-progress")
    assert result.exit_code == 2 and "is not a detector folder" in result.stderr and "cliplab inspect fit" in result.stderr
