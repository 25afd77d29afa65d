"""``cliplab train``: flags, --data as a second name of --images, a YAML config, resume, weights that load."""

import json
import subprocess
import sys

import numpy as np
import yaml

from cliplab.models import load_model


def test_train_with_data_alias_and_config_file(cli, model_args, tiny_model_files, tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"steps": 2, "batch-size": 4, "objectives": "clip,hardneg:0.5", "eval_n": 0, "workers": 0}))
    out = tmp_path / "run"
    res = cli("train", *model_args, "--data", "synthetic:16:1", "--config", tmp_path / "run.yaml", "--lr", "1e-3", "--out", out, "--no-progress", "--device", "cpu")
    assert res.exit_code == 0, res.output
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["steps"] == 2 and recorded["lr"] == 1e-3 and recorded["data"] == "synthetic:16:1" and recorded["objectives"] == "clip,hardneg:0.5"
    trained = load_model(tiny_model_files["spec"], pretrained=out / "model.safetensors", device="cpu")
    start = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu")
    assert not np.allclose(trained.encode_texts(["a red star"]), start.encode_texts(["a red star"]))
    # the same run again needs --resume; with it, a finished run has nothing left to do
    again = cli("train", *model_args, "--images", "synthetic:16:1", "--config", tmp_path / "run.yaml", "--out", out, "--no-progress", "--device", "cpu")
    assert again.exit_code == 2 and "--resume" in again.output


def test_bad_objective_is_one_line(cli, model_args, tmp_path):
    res = cli("train", *model_args, "--data", "synthetic:8", "--objectives", "clip,nope", "--out", tmp_path / "r", "--device", "cpu")
    assert res.exit_code == 2 and "unknown objective 'nope'" in res.output


def test_bad_evaluation_is_one_line(cli, model_args, tmp_path):
    res = cli("train", *model_args, "--data", "synthetic:8", "--evaluate", "accuracy", "--out", tmp_path / "r", "--device", "cpu")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "unknown evaluate 'accuracy'; use auto, none or a comma list of scenes, regions, dense" in res.output
    assert not (tmp_path / "r").exists()


def test_eval_names_the_evaluations_and_they_reach_the_summary(cli, model_args, tmp_path):
    out = tmp_path / "r"
    res = cli("train", *model_args, "--data", "synthetic:8", "--steps", "1", "--batch-size", "4", "--eval", "dense,regions", "--eval-n", "3",
              "--workers", "0", "--out", out, "--no-progress", "--device", "cpu")  # fmt: skip
    assert res.exit_code == 0, res.output
    said = [line for line in res.stderr.splitlines() if line.startswith("step ")]
    assert len(said) == 2 and all("region accuracy" in line and "naclip mIoU" in line and "shape" not in line for line in said)
    evals = json.loads((out / "summary.json").read_text())["evals"]
    assert [sorted(e["eval"]) for e in evals] == [["dense", "region_accuracy"]] * 2
    assert yaml.safe_load((out / "config.yaml").read_text())["evaluate"] == "dense,regions"


def test_python_dash_m_cliplab_runs_the_cli():
    res = subprocess.run([sys.executable, "-m", "cliplab", "train", "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0 and "--data" in res.stdout and "--objectives" in res.stdout and "--eval " in res.stdout
