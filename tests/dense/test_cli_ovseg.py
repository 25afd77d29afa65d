"""cliplab segmenter train, segment --segmenter / --trident, eval segmentation --segmenter with seen/unseen figures."""

import json

import numpy as np
from PIL import Image

from cliplab.data import synthetic


def test_train_segment_and_eval_a_segmenter(cli, tiny_model_files, tmp_path):
    out = tmp_path / "seg"
    model = ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
    result = cli("segmenter", "train", *model, "--images", "synthetic:6", "--classes", "circle,square,star", "--steps", "2",
                 "--batch-size", "2", "--out", out, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and json.loads((out / "ovsegmenter.json").read_text())["classes"] == ["circle", "square", "star"]
    image = tmp_path / "in.png"
    synthetic.scene(0, image_size=48, split="test").image.save(image)
    result = cli("segment", "--image", image, "--classes", "heart,star", "--segmenter", out, "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    areas = json.loads((tmp_path / "s" / "areas.json").read_text())
    assert areas["method"] == "trained" and areas["classes"] == ["background", "heart", "star"]
    assert np.asarray(Image.open(tmp_path / "s" / "labels.png")).shape == (48, 48)
    report = tmp_path / "r.json"
    result = cli("eval", "--task", "segmentation", "--images", "synthetic:3:1", "--segmenter", out, "--out", report, "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())["metrics"]
    assert {"miou", "seen_miou", "unseen_miou", "foreground_iou"} <= metrics.keys()
    result = cli("segmenter", "train", *model, "--images", "photos/", "--out", tmp_path / "x", "--no-progress")
    assert result.exit_code != 0 and "synthetic" in result.output and "Traceback" not in result.output


def test_segment_trident_and_seen_classes_of_a_training_free_method(cli, tiny_model_files, tmp_path):
    model = ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
    image = tmp_path / "in.png"
    synthetic.scene(0, image_size=96, split="test").image.save(image)
    result = cli("segment", "--image", image, "--classes", "circle,star", *model, "--size", "96", "--window", "32", "--stride", "16",
                 "--trident", "--out", tmp_path / "s")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "s" / "labels.png")).shape == (96, 96)
    report = tmp_path / "r.json"
    result = cli("eval", "--task", "segmentation", "--images", "synthetic:2:1", *model, "--seen-classes", "circle,square",
                 "--out", report, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "unseen_miou" in json.loads(report.read_text())["metrics"]
