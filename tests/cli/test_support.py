"""``cliplab support build``: a support set from class prompts alone, saved as a head classify reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

FAST = ["--batch-size", "16", "--workers", "0", "--no-progress"]
SHAPES = "circle,square,triangle"


def test_help(cli):
    result = cli("support", "build", "--help")
    assert result.exit_code == 0
    for option in ("--retrieve", "--generate", "--k", "--n-per-class", "--head", "--test", "--templates"):
        assert option in result.stdout


def test_build_from_retrieval_and_generation_then_classify(cli, model_args, tiny_model, tmp_path):
    from cliplab.adapt import SceneGenerator, SupportSetAdapter, load
    from cliplab.features import embed

    test = tmp_path / "test"
    for shape in SHAPES.split(","):
        (test / shape).mkdir(parents=True)
        for i, im in enumerate(SceneGenerator(seed=9).generate(f"a {shape}", 3)):
            im.save(test / shape / f"{i}.png")
    head, report = tmp_path / "head.safetensors", tmp_path / "support.json"
    args = ["--classnames", SHAPES, "--templates", "a photo of a {c}", "--retrieve", "synthetic:20:5", "--k", "3",
            "--generate", "scene", "--n-per-class", "4", "--test", test, "--head", head, "--out", report,
            "--precision", "fp32", "--cache-dir", tmp_path / "cache"]  # fmt: skip
    result = cli("support", "build", *model_args, *args, *FAST)
    assert result.exit_code == 0, result.output
    assert "support set: 21 images" in result.stdout and "zero-shot" in result.stdout
    info = json.loads(report.read_text())
    assert info["support"] == {"per_class": {"circle": 7, "square": 7, "triangle": 7}, "retrieved": 9, "generated": 12}
    fitted = load(head)
    assert isinstance(fitted, SupportSetAdapter) and fitted.classes_.tolist() == sorted(SHAPES.split(","))
    feats = embed(tiny_model, str(test), cache_dir=None, progress=False).labelled()
    assert info["test"]["images"] == len(feats) and info["test"]["support"] == pytest.approx(
        float(np.mean(fitted.predict(feats.X) == np.array(feats.labels))), abs=1e-6)


@pytest.mark.parametrize(("args", "message"), [
    (["--classnames", SHAPES], "the support set needs a source"),
    (["--generate", "scene"], "pass --classnames"),
    (["--classnames", SHAPES, "--generate", "nowhere"], "neither 'scene' nor a folder"),
    (["--classnames", "cat,dog", "--generate", "scene"], "names no scene attribute"),
    (["--classnames", SHAPES, "--generate", "scene", "--n-per-class", "2", "--test", "synthetic:4"], "no labelled images"),
])  # fmt: skip
def test_bad_input_exits_2(cli, model_args, tmp_path, args, message):
    result = cli("support", "build", *model_args, *args, "--head", tmp_path / "h.safetensors", *FAST)
    assert result.exit_code == 2 and message in result.output, result.output
