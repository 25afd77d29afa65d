"""``cliplab eval``."""

from __future__ import annotations

import json

import pytest

from cliplab.evaluate.runner import open_dataset, run_zeroshot_classification
from cliplab.evaluate.tasks import EmbedOptions

FAST = ["--batch-size", "16", "--workers", "0", "--no-progress"]


def test_help(cli):
    group = cli("eval", "--help")
    assert group.exit_code == 0
    assert "--task" in group.stdout and "zeroshot_classification" in group.stdout and "robustness" in group.stdout
    result = cli("eval", "auto", "--help")
    assert result.exit_code == 0
    for option in ("--images", "--templates", "--classnames", "--attribute", "--recall-k", "--out", "--report"):
        assert option in result.stdout


def test_classification_json_and_report(cli, model_args, tiny_model, tmp_path):
    out, report = tmp_path / "res.json", tmp_path / "report.html"
    # fp32 pinned: the reference below is fp32 on the CPU, and auto picks bf16 on bf16 hardware
    result = cli("eval", *model_args, "--images", "synthetic:16:7", "--task", "zeroshot_classification",
                 "--precision", "fp32", "--out", out, "--report", report, *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {k: data[k] for k in ("dataset", "task")} == {"dataset": "synthetic:16:7", "task": "zeroshot_classification"}
    assert data["model"] == tiny_model.name and data["pretrained"].endswith("tiny.safetensors")
    expected = run_zeroshot_classification(tiny_model, open_dataset("synthetic:16:7", attribute="shape"), opts=EmbedOptions(batch_size=16, num_workers=0))
    assert data["metrics"] == pytest.approx(expected.metrics, abs=1e-6)
    assert data["attribute"] == "shape" and data["precision"] == "fp32" and "cliplab_version" in data
    assert "acc1" in result.stdout
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 2 and "Confusion matrix" in html


def test_attribute_and_classnames(cli, model_args, tmp_path):
    out = tmp_path / "res.json"
    result = cli("eval", *model_args, "--images", "synthetic:8:1", "--attribute", "color", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "zeroshot_classification"  # auto: the dataset has labels
    assert data["classnames"][:3] == ["red", "green", "blue"]
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"{c} thing" for c in data["classnames"]) + "\n")
    result = cli("eval", *model_args, "--images", "synthetic:8:1", "--attribute", "color", "--classnames", names,
                 "--templates", "tip_adapter", "--out", out, *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output


def test_old_dataset_flag_is_gone(cli, model_args, tmp_path):
    result = cli("eval", *model_args, "--dataset", "synthetic:8:1", "--out", tmp_path / "res.json", *FAST)
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        "error: no such option --dataset for cliplab eval auto; see cliplab eval auto --help"
    ]
    assert not (tmp_path / "res.json").exists()


def test_options_that_do_not_apply_are_errors(cli, model_args, tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        Image.new("RGB", (20, 20), "red").save(tmp_path / "imgs" / c / "x.png")
    attr = cli("eval", *model_args, "--images", tmp_path / "imgs", "--attribute", "color", "--out", tmp_path / "r.json", *FAST)
    assert attr.exit_code == 2 and "--attribute applies to synthetic scenes" in attr.stderr
    ret = cli("eval", *model_args, "--images", "synthetic:4", "--task", "zeroshot_retrieval", "--attribute", "color",
              "--out", tmp_path / "r.json", *FAST)  # fmt: skip
    assert ret.exit_code == 2 and "--attribute applies to --task auto, zeroshot_classification, robustness" in ret.stderr
    k = cli("eval", *model_args, "--images", "synthetic:4", "--recall-k", "5", "--out", tmp_path / "r.json", *FAST)
    assert k.exit_code == 2 and "--recall-k applies to retrieval" in k.stderr


def test_stray_file_keeps_folder_labels(cli, model_args, tmp_path):
    from PIL import Image

    root = tmp_path / "mixed"
    for c, colour in (("cat", "red"), ("dog", "blue")):
        (root / c).mkdir(parents=True)
        Image.new("RGB", (20, 20), colour).save(root / c / "x.png")
    Image.new("RGB", (20, 20), "green").save(root / "root.png")
    out = tmp_path / "r.json"
    result = cli("eval", *model_args, "--images", root, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "zeroshot_classification" and data["classnames"] == ["cat", "dog"]
    assert data["n_images"] == 2 and data["n_unlabelled"] == 1
    assert "'root.png'" in result.stderr


@pytest.mark.parametrize("ks", [["1", "5"], ["1,5"], ["1", "--recall-k", "5"]])
def test_retrieval_recall_k_forms(cli, model_args, tmp_path, ks):
    out = tmp_path / "ret.json"
    result = cli("eval", *model_args, "--images", "synthetic:10:2", "--task", "zeroshot_retrieval", "--recall-k", *ks, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics) == {f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 5)}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--images", "/no/such/folder"], "no such file or folder"),
        (["--images", "synthetic:x"], "synthetic:<n>"),
        (["--images", "synthetic:4", "--task", "zeroshot_retrieval", "--recall-k", "0"], ">= 1"),
        (["--images", "synthetic:4", "--recall-k", "five"], "integers"),
        (["--images", "synthetic:4", "stray"], "unexpected argument"),
        (["--images", "synthetic:4", "--classnames", "missing.txt"], "not found"),
        (["--images", "synthetic:4", "--templates", "nonsense"], "unknown template set"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, model_args, tmp_path, args, message):
    result = cli("eval", *model_args, *args, "--out", tmp_path / "r.json", *FAST)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_bad_model_exits_2(cli, tmp_path):
    result = cli("eval", "--model", "nosuch:thing", "--images", "synthetic:4", "--out", tmp_path / "r.json", *FAST)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "unknown model spec" in result.stderr


def _write_scenes(root, n=6):
    """Scenes as PNG files: class folders by shape, and a JSONL manifest with two captions each."""
    from cliplab.data import synthetic

    rows = []
    for i, rec in enumerate(synthetic.iter_scenes(n, seed=11, max_objects=1)):
        folder = root / "by_shape" / rec.objects[0]["shape"]
        folder.mkdir(parents=True, exist_ok=True)
        rec.image.save(folder / f"{i}.png")
        rows.append({"image": f"by_shape/{rec.objects[0]['shape']}/{i}.png", "caption": [rec.caption, rec.short_caption]})
    (root / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return rows


def test_folder_classification_and_manifest_retrieval(cli, model_args, tmp_path):
    rows = _write_scenes(tmp_path)
    out = tmp_path / "cls.json"
    result = cli("eval", *model_args, "--images", tmp_path / "by_shape", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "zeroshot_classification" and data["n_images"] == len(rows)
    assert data["classnames"] == sorted({r["image"].split("/")[1] for r in rows})
    out = tmp_path / "ret.json"
    result = cli("eval", *model_args, "--images", tmp_path / "captions.jsonl", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "zeroshot_retrieval" and data["n_texts"] == 2 * len(rows)
    assert data["metrics"]["image_retrieval_recall@10"] == 1.0  # 6 images: every one is in the top 10
