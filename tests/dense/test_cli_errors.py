"""``cliplab segment`` / ``eval --task segmentation`` refuse bad input in one line that speaks in flags."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, flag_words, python_words",
    [
        (["--classes", "cat,dog", "--regions", "--background", "none"], "--regions", "regions=True"),
        (["--classes", "background,cat"], "--background none", "background=None"),
    ],
)
def test_segment_errors_name_flags_not_python_arguments(cli, tiny_model_files, image, tmp_path, args, flag_words, python_words):
    result = cli("segment", "--image", image, "--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"],
                 *args, "--out", tmp_path / "seg")  # fmt: skip
    line = one_line_error(result)
    assert flag_words in line and python_words not in line
    assert not (tmp_path / "seg").exists()


def test_python_errors_keep_python_wording(tiny_model):
    from cliplab.dense import Segmenter

    with pytest.raises(ValueError, match="regions=True"):
        Segmenter(tiny_model, ["cat"], background=None, regions=True)


@pytest.mark.parametrize("kind", ["torch", "pickle", "missing"])
def test_refiner_that_is_not_safetensors_is_refused_without_unpickling(cli, tiny_model_files, image, tmp_path, monkeypatch, kind):
    head = tmp_path / "head.pt"
    if kind == "torch":
        torch.save({"conv.weight": torch.zeros(2)}, head)
    elif kind == "pickle":
        head.write_bytes(pickle.dumps({"conv.weight": [0.0]}))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled the refiner file"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load on the refiner file"))
    common = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"], "--refiner", head]
    line = one_line_error(cli("segment", "--image", image, "--classes", "a,b", *common, "--out", tmp_path / "seg"))
    assert str(head) in line and "cliplab refiner" in line
    line = one_line_error(cli("eval", "--task", "segmentation", "--images", "synthetic:1", *common, "--out", tmp_path / "r.json"))
    assert str(head) in line

