"""Every ``cliplab eval`` task runs with its default options (no ``--batch-size``, ``--workers``, ...) on
the smallest input it allows, at ``--precision auto`` and at forced ``--precision bf16``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def noise_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noise")
    for i in range(6):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


# task -> the least it needs besides --out (robustness: one corruption at one severity, as in the issue)
TASK_ARGS = {
    "zeroshot_classification": ["--images", "synthetic:24"],
    "zeroshot_retrieval": ["--images", "synthetic:24"],
    "robustness": ["--images", "synthetic:24", "--corruptions", "fog", "--severities", "1"],
    "calibration": ["--images", "synthetic:24"],
    "ood": ["--images", "synthetic:24", "--ood-images", "NOISE"],
    "fairness": ["--images", "synthetic:24", "--group-column", "background"],
    "diagnostics": ["--images", "synthetic:24"],
    "generation": ["--images", "synthetic:24"],
    "captioning": ["--images", "synthetic:24", "--captioner", "CAPTIONER"],
    "skills": ["--scenes", "4"],
    "mmvp": ["--pairs", "2"],
    "segmentation": ["--images", "synthetic:2"],
}


@pytest.fixture(scope="module")
def captioner(tiny_model, tmp_path_factory):
    """A captioner of the tiny test model (two steps: the task's plumbing, not its quality)."""
    from cliplab.caption import Captioner

    folder = tmp_path_factory.mktemp("captioner") / "cap"
    return Captioner(tiny_model, steps=2, width=16, heads=2).fit("synthetic:8", cache_dir=None).save(folder)


def run_task(cli, model_args, tmp_path, noise_images, task: str, precision: str, captioner=None) -> dict:
    given = {"NOISE": noise_images, "CAPTIONER": captioner}
    args = [str(given[a]) if a in given else a for a in TASK_ARGS[task]]
    out = tmp_path / f"{task}.json"
    result = cli("eval", *model_args, "--task", task, *args, "--precision", precision, "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["task"] == task and data["metrics"]
    return data


@pytest.mark.parametrize("precision", ["auto", "bf16"])
@pytest.mark.parametrize("task", list(TASK_ARGS))
def test_every_task_runs_with_default_options(cli, model_args, tmp_path, noise_images, captioner, task, precision):
    from cliplab.models.precision import auto_precision

    expected = auto_precision(torch.device("cpu"))[0] if precision == "auto" else precision
    assert run_task(cli, model_args, tmp_path, noise_images, task, precision, captioner)["precision"] == expected


@pytest.mark.parametrize("task", ["robustness", "segmentation"])
def test_auto_precision_that_picks_bf16(cli, model_args, tmp_path, noise_images, bf16_cpu, task):
    """As on a CPU with avx512_bf16: ``--precision auto`` resolves to bf16 and the tasks still run."""
    assert run_task(cli, model_args, tmp_path, noise_images, task, "auto")["precision"] == "bf16"
