"""``cliplab eval --task`` beyond accuracy: JSON, report, and one-line errors for misused options."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

FAST = ["--batch-size", "16", "--workers", "0", "--no-progress"]


def test_help_names_the_tasks(cli):
    out = cli("eval", "--help").stdout
    for word in ("robustness", "calibration", "ood", "fairness", "diagnostics", "generation", "captioning", "skills", "mmvp", "segmentation"):
        assert word in out


def test_skills_json_table_and_report(cli, model_args, tmp_path):
    out, report = tmp_path / "skills.json", tmp_path / "skills.html"
    result = cli("eval", *model_args, "--task", "skills", "--scenes", "8", "--seed", "3", "--out", out, "--report", report, "--no-progress")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "skills" and set(data["metrics"]) >= {"binding", "spatial", "counting", "long_caption_retrieval"}
    assert "long_caption_retrieval" in result.stdout and "chance" in result.stdout
    assert "Accuracy per skill" in report.read_text()


def test_mmvp_json_table_and_report(cli, model_args, tmp_path):
    out, report = tmp_path / "mmvp.json", tmp_path / "mmvp.html"
    result = cli("eval", *model_args, "--task", "mmvp", "--pairs", "4", "--seed", "3", "--out", out, "--report", report, "--no-progress")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "mmvp" and set(data["metrics"]) == {"color_swap", "color", "shape", "size", "position"}
    assert {r["kind"] for r in data["rows"]} == set(data["metrics"]) and "color_swap" in result.stdout
    assert "blind rate" in report.read_text()


def test_ood_and_robustness_json(cli, model_args, tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    for i in range(6):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(noise / f"{i}.png")
    out = tmp_path / "ood.json"
    result = cli("eval", *model_args, "--task", "ood", "--images", "synthetic:8:1", "--ood-dataset", noise, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())["metrics"]) >= {"msp_auroc", "mcm_fpr95", "energy_aupr"}
    assert "maxlogit" in result.stdout
    out = tmp_path / "rob.json"
    result = cli("eval", *model_args, "--task", "robustness", "--images", "synthetic:6:1", "--corruptions", "pixelate,contrast",
                 "--severities", "2,4", "--out", out, *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics["corruptions"]) == {"pixelate", "contrast"} and set(metrics["corruptions"]["pixelate"]) == {"2", "4"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "calibration", "--images", "synthetic:4", "--corruptions", "fog"], "--corruptions applies to --task robustness, not to calibration"),
        (["--task", "ood", "--images", "synthetic:4"], "Missing option '--ood-images'"),
        (["--task", "fairness", "--images", "synthetic:4"], "Missing option '--group-column'"),
        (["--task", "calibration"], "Missing option '--images'"),
        (["--task", "skills", "--images", "synthetic:4"], "--images applies to --task auto, zeroshot_classification"),
        (["--task", "robustness", "--images", "synthetic:4", "--corruptions", "frost"], "unknown corruption 'frost'"),
        (["--task", "robustness", "--images", "synthetic:4", "--severities", "0,9"], "severities among 1-5"),
        (["--task", "diagnostics", "--images", "synthetic:4", "--recall-k", "5"], "--recall-k applies to --task auto, zeroshot_retrieval, retrieval, not to diagnostics"),
    ],
)
def test_misused_options_fail_in_one_line(cli, model_args, tmp_path, args, message):
    result = cli("eval", *model_args, *args, "--out", tmp_path / "x.json", *FAST)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bins_error_names_calibration(cli, tmp_path):
    result = cli("eval", "--images", "synthetic:4", "--bins", "5", "--out", tmp_path / "r.json")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--bins applies to --task calibration, not to auto" in result.stderr


# each task's own options, and one option of another task that its help must not show
OWN_OPTIONS = {
    "auto": (["--templates", "--classnames", "--attribute", "--recall-k", "--image-col"], "--corruptions"),
    "zeroshot_classification": (["--templates", "--classnames", "--attribute", "--label-col"], "--recall-k"),
    "zeroshot_retrieval": (["--recall-k", "--caption-col", "--language"], "--templates"),
    "retrieval": (["--recall-k", "--caption-col", "--language", "--lang-col"], "--templates"),
    "robustness": (["--corruptions", "--severities", "--seed", "--classnames"], "--bins"),
    "calibration": (["--bins", "--seed", "--templates"], "--corruptions"),
    "ood": (["--ood-images", "--attribute"], "--seed"),
    "fairness": (["--group-column", "--seed", "--classnames"], "--ood-images"),
    "diagnostics": (["--seed"], "--classnames"),
    "generation": (["--captions", "--reference", "--seed"], "--attribute"),
    "captioning": (["--captioner", "--beam"], "--attribute"),
    "skills": (["--scenes", "--seed"], "--images"),
    "mmvp": (["--pairs", "--seed"], "--images"),
    "segmentation": (["--method", "--pamr", "--regions", "--refiner", "--templates"], "--recall-k"),
}
SHARED = ["--model", "--pretrained", "--precision", "--batch-size", "--progress", "--out", "--report"]
EMBEDDING = ["--decode", "--cache-dir", "--no-cache", "--workers"]  # the feature store's: only tasks that embed through it
NOT_EMBEDDING = {"skills", "mmvp", "segmentation"}


@pytest.mark.parametrize("task", list(OWN_OPTIONS))
def test_each_task_help_shows_its_own_options_only(cli, task):
    own, other = OWN_OPTIONS[task]
    for spelling in (["eval", task, "--help"], ["eval", "--task", task, "--help"]):
        result = cli(*spelling)
        assert result.exit_code == 0, result.output
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.stdout))
        assert set(own + SHARED) <= flags and other not in flags
        assert (set(EMBEDDING) & flags) == (set() if task in NOT_EMBEDDING else set(EMBEDDING))


def test_every_task_has_a_sub_command(cli):
    from cliplab.cli.evaluate import eval_app

    names = {c.name for c in eval_app.registered_commands}
    assert names == set(OWN_OPTIONS)


@pytest.mark.parametrize(
    "task, args",
    [
        ("zeroshot_retrieval", ["--images", "synthetic:6:1", "--recall-k", "1", "2"]),
        ("calibration", ["--images", "synthetic:8:1", "--bins", "3", "--seed", "2"]),
    ],
)
def test_task_option_and_sub_command_give_the_same_json(cli, model_args, tmp_path, task, args):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    sub = cli("eval", task, *model_args, *args, "--out", a, "--no-cache", *FAST)
    flag = cli("eval", *model_args, *args, "--task", task, "--out", b, "--no-cache", *FAST)
    assert sub.exit_code == 0 and flag.exit_code == 0, sub.output + flag.output
    assert json.loads(a.read_text()) == json.loads(b.read_text())
    assert json.loads(a.read_text())["task"] == task


def test_task_first_rewrites_the_task_option():
    from cliplab.cli.evaluate import task_first

    assert task_first(["--images", "x", "--task", "ood", "--out", "o"]) == ["ood", "--images", "x", "--out", "o"]
    assert task_first(["-t", "skills"]) == ["skills"]
    assert task_first(["--task=calibration", "--bins", "3"]) == ["calibration", "--bins", "3"]
    assert task_first(["--images", "x"]) == ["auto", "--images", "x"]
    assert task_first(["robustness", "--images", "x"]) == ["robustness", "--images", "x"]
    assert task_first(["--help"]) == ["--help"]


def test_unknown_task_is_one_line_naming_the_tasks(cli, tmp_path):
    for spelling in (["--task", "robustnes", "--images", "synthetic:4"], ["robustnes", "--images", "synthetic:4"]):
        result = cli("eval", *spelling, "--out", tmp_path / "r.json")
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert "no such task 'robustnes'" in lines[0] and "'robustness'" in lines[0] and "zeroshot_retrieval" in lines[0]


def test_fairness_multilabel_from_the_command_line(cli, model_args, tmp_path):
    """A manifest whose label cells hold label sets ("star|circle"): per-label AUROC per group in the JSON."""
    from cliplab.data.sources import open_source

    rows = []
    for item in open_source("synthetic:16:4").items:
        path = tmp_path / f"{item.id}.png"
        path.write_bytes(item.read_bytes())
        rows.append({"image": str(path), "label": "|".join(o["shape"] for o in item.meta["objects"]), "background": item.meta["background"]})
    manifest = tmp_path / "scenes.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "fair.json"
    result = cli("eval", "fairness", *model_args, "--images", manifest, "--group-column", "background", "--multilabel", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert any("|" in r["label"] for r in rows)
    (column,) = data["columns"]
    assert set(column["auroc"]) == {r["background"] for r in rows}  # every group ...
    assert all(set(per) == {*data["classes"], "macro"} for per in column["auroc"].values())  # ... every label and the macro mean
    assert sorted(data["classes"]) == sorted({s for r in rows for s in r["label"].split("|")})
    assert "macro_auroc_gap" in data["metrics"]
