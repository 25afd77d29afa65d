"""``cliplab caption train`` and ``cliplab caption`` end to end on a few synthetic scenes; ``cliplab eval captioning``."""

from __future__ import annotations

import json

import pytest

FAST = ["--no-progress", "--no-cache", "--workers", "0"]


@pytest.fixture(scope="module")
def captioner_dir(cli, tiny_model_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("captioner") / "cap"
    model = ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
    result = cli("caption", "train", *model, "--images", "synthetic:12", "--out", out, "--steps", "3", "--width", "32", *FAST)
    assert result.exit_code == 0, result.output
    assert "caption loss" in result.stdout and (out / "captioner.json").is_file() and (out / "captioner.safetensors").is_file()
    return out


def test_caption_writes_one_json_object_per_image(cli, model_args, captioner_dir, tmp_path):
    out = tmp_path / "captions.jsonl"
    result = cli("caption", *model_args, "--images", "synthetic:5:1", "--captioner", captioner_dir, "--out", out, "--beam", "2", *FAST)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"synthetic-test-1-{i:06d}" for i in range(5)]
    assert all(set(r) == {"id", "caption"} and isinstance(r["caption"], str) for r in rows)
    assert "captioned 5 images" in result.stdout


def test_the_bundled_captioner_is_the_default(cli, tmp_path):
    from cliplab.data import synthetic

    out = tmp_path / "captions.jsonl"
    result = cli("caption", "--images", "synthetic:4:2026", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    captions = [json.loads(line)["caption"] for line in out.read_text().splitlines()]
    shapes = [synthetic.scene(i, seed=2026, split="test").objects[0]["shape"] for i in range(4)]
    assert all(shape in caption for shape, caption in zip(shapes, captions)), captions


def test_eval_captioning_both_spellings(cli, model_args, captioner_dir, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    sub = cli("eval", "captioning", *model_args, "--images", "synthetic:6:1", "--captioner", captioner_dir, "--out", a, *FAST)
    flag = cli("eval", *model_args, "--task", "captioning", "--images", "synthetic:6:1", "--captioner", captioner_dir, "--out", b, *FAST)
    assert sub.exit_code == 0 and flag.exit_code == 0, sub.output + flag.output
    data = json.loads(a.read_text())
    assert data == json.loads(b.read_text()) and data["task"] == "captioning" and data["n_images"] == 6
    assert set(data["metrics"]) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d", "clip_score", "ref_clip_score"}
    assert "cider_d" in sub.stdout


def test_misuse_fails_in_one_line(cli, model_args, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "f").write_text("x")
    out = tmp_path / "x.jsonl"
    cases = [
        (["caption", "--out", out], "pass --images SRC and --out"),
        (["caption", *model_args, "--images", "synthetic:2", "--out", out], "no captioner ships for openclip:cliplab-test-tiny"),
        (["caption", "train", "--images", "synthetic:2", "--out", full], "already exists and is not empty"),
    ]
    for args, message in cases:
        result = cli(*args, *FAST)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_caption_train_distils_from_teachers(cli, tiny_model_files, captioner_dir, tmp_path):
    model = ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
    args = ["caption", "train", *model, "--images", "synthetic:12", "--steps", "2", "--width", "16", *FAST]
    teachers = f"{captioner_dir},{captioner_dir}"
    result = cli(*args, "--out", tmp_path / "student", "--teachers", teachers, "--ensemble-heads", "2", "--temperature", "3")
    assert result.exit_code == 0, result.output
    assert "distillation loss" in result.stdout and "(2 teachers)" in result.stdout
    config = json.loads((tmp_path / "student" / "captioner.json").read_text())
    assert config["params"]["ensemble_heads"] == 2 and config["params"]["temperature"] == 3.0
    assert config["vocab"] == json.loads((captioner_dir / "captioner.json").read_text())["vocab"]
    bad = cli(*args, "--out", tmp_path / "bad", "--teachers", teachers, "--ensemble-heads", "3")
    assert bad.exit_code == 2 and "3 ensemble heads for 2 teachers" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.output
