"""The segment command, eval --task segmentation, and the bundled ViT's promises (size, patch grid)."""

import json

import numpy as np
import pytest
from PIL import Image

from cliplab.models.bundled import BUNDLED


def test_segment_command_writes_labels_overlay_and_areas(cli, tiny_model_files, tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "seg"
    result = cli(*["segment", "--image", str(image), "--classes", "sky,road", "--model", tiny_model_files["spec"],
                   "--pretrained", str(tiny_model_files["weights"]), "--method", "naclip", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(out / "labels.png"))
    assert labels.shape == (40, 50) and labels.max() <= 2
    areas = json.loads((out / "areas.json").read_text())
    assert areas["classes"] == ["background", "sky", "road"] and abs(sum(areas["areas"].values()) - 1) < 1e-6
    assert Image.open(out / "overlay.png").width > 50  # image plus legend


def test_eval_segmentation_writes_json_and_report(cli, tiny_model_files, tmp_path):
    out, report = tmp_path / "r.json", tmp_path / "r.html"
    result = cli(*["eval", "--task", "segmentation", "--images", "synthetic:4:1", "--model", tiny_model_files["spec"],
                   "--pretrained", str(tiny_model_files["weights"]), "--method", "maskclip", "--out", str(out),
                   "--report", str(report), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "segmentation" and 0 <= data["metrics"]["miou"] <= 1 and len(data["per_image"]) == 4
    assert data["settings"] == {"pamr": False, "regions": False, "learned_refiner": False, "trident": False}
    assert "Worst" in report.read_text()


def test_eval_segmentation_with_images_regions_and_pamr(cli, tiny_model_files, tmp_path):
    out = tmp_path / "r.json"
    result = cli(*["eval", "--task", "segmentation", "--images", "synthetic:3:1", "--model", tiny_model_files["spec"],
                   "--pretrained", str(tiny_model_files["weights"]), "--method", "naclip", "--regions", "--pamr",
                   "--out", str(out), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["settings"] == {"pamr": True, "regions": True, "learned_refiner": False, "trident": False} and len(data["per_image"]) == 3
    wrong = cli(*["eval", "--images", "synthetic:3", "--regions", "--out", str(tmp_path / "x.json")])
    assert wrong.exit_code == 2 and "--regions applies to --task segmentation" in wrong.output


def test_refiner_command_writes_a_head_segment_uses(cli, tiny_model_files, resnet_model, tmp_path, monkeypatch):
    import cliplab.models

    real = cliplab.models.load_model
    monkeypatch.setattr(cliplab.models, "load_model", lambda spec, **kw: resnet_model if spec == "teacher" else real(spec, **kw))
    head = tmp_path / "head.safetensors"
    result = cli(*["refiner", "--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"]), "--teacher", "teacher",
                   "--teacher-layer", "1", "--steps", "3", "--scenes", "8", "--out", str(head)])  # fmt: skip
    assert result.exit_code == 0, result.output
    image = tmp_path / "im.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    result = cli(*["segment", "--image", str(image), "--classes", "a,b", "--model", tiny_model_files["spec"], "--pretrained",
                   str(tiny_model_files["weights"]), "--refiner", str(head), "--regions", "--out", str(tmp_path / "seg")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seg" / "labels.png").is_file()


def test_bad_segment_input_is_one_line(cli, tmp_path):
    result = cli(*["segment", "--image", str(tmp_path / "missing.png"), "--classes", "a", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "missing.png" in result.output


def test_bundled_vit_is_small_with_an_8x8_grid():
    entry = BUNDLED["shapes-vit"]
    cfg = json.loads(entry.config.read_text())["model_cfg"]["vision_cfg"]
    assert cfg["image_size"] // cfg["patch_size"] >= 8
    assert entry.weights.stat().st_size <= 30e6 and entry.card.is_file()


@pytest.mark.parametrize("precision, on_bf16_cpu", [("auto", False), ("bf16", False), ("auto", True)])
def test_segment_with_default_options_at_each_precision(cli, tmp_path, request, precision, on_bf16_cpu):
    """The bundled model, the default method: the label map, overlay and areas at auto, forced bf16, and auto on a
    CPU with native bf16 (simulated), where auto picks bf16."""
    from cliplab.data.sources import open_source

    if on_bf16_cpu:
        request.getfixturevalue("bf16_cpu")
    image = tmp_path / "scene.png"
    image.write_bytes(open_source("synthetic:1:5").items[0].read_bytes())
    result = cli("segment", "--image", image, "--classes", "star,circle,square", "--precision", precision, "--out", tmp_path / "seg")
    assert result.exit_code == 0, result.output
    areas = json.loads((tmp_path / "seg" / "areas.json").read_text())
    import torch

    from cliplab.models.precision import auto_precision

    assert areas["precision"] == (auto_precision(torch.device("cpu"))[0] if precision == "auto" else precision), areas
    assert areas["precision"] == "bf16" or not on_bf16_cpu
    assert {"labels.png", "overlay.png", "areas.json"} <= {p.name for p in (tmp_path / "seg").iterdir()}
