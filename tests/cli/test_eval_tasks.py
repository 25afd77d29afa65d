"""``cliplab eval --task`` beyond accuracy: JSON, report, and one-line errors for misused options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

FAST = ["--batch-size", "16", "--workers", "0", "--no-progress"]


def test_help_names_the_tasks_and_options(cli):
    out = cli("eval", "--help").stdout
    for word in ("robustness", "skills", "--corruptions", "--severities", "--ood-images", "--group-column", "--captions", "--reference", "--scenes", "--images"):
        assert word in out


def test_skills_json_table_and_report(cli, model_args, tmp_path):
    out, report = tmp_path / "skills.json", tmp_path / "skills.html"
    result = cli("eval", *model_args, "--task", "skills", "--scenes", "8", "--seed", "3", "--out", out, "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == "skills" and set(data["metrics"]) >= {"binding", "spatial", "counting", "long_caption_retrieval"}
    assert "long_caption_retrieval" in result.stdout and "chance" in result.stdout
    assert "Accuracy per skill" in report.read_text()


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
        (["--task", "calibration", "--images", "synthetic:4", "--corruptions", "fog"], "--corruptions does not apply to --task calibration"),
        (["--task", "ood", "--images", "synthetic:4"], "needs --ood-images"),
        (["--task", "fairness", "--images", "synthetic:4"], "needs --group-column"),
        (["--task", "calibration"], "needs --images"),
        (["--task", "skills", "--images", "synthetic:4"], "drop --images"),
        (["--task", "robustness", "--images", "synthetic:4", "--corruptions", "frost"], "unknown corruption 'frost'"),
        (["--task", "robustness", "--images", "synthetic:4", "--severities", "0,9"], "severities among 1-5"),
        (["--task", "diagnostics", "--images", "synthetic:4", "--recall-k", "5"], "--recall-k does not apply"),
    ],
)
def test_misused_options_fail_in_one_line(cli, model_args, tmp_path, args, message):
    result = cli("eval", *model_args, *args, "--out", tmp_path / "x.json", *FAST)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bins_error_names_calibration(cli, tmp_path):
    result = cli("eval", "--images", "synthetic:4", "--bins", "5", "--out", tmp_path / "r.json")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--bins applies to --task calibration" in result.stderr and "robustness" not in result.stderr
