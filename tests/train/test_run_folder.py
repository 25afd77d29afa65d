"""The run folder of ``cliplab train``: resume continues the saved config, one run at a time (a lock),
an interrupted run's temporary files are cleared, and the final line counts what ran."""

import fcntl
import json
import resource
import signal
import subprocess
import sys

import pytest

from cliplab.errors import InputError
from cliplab.train import TrainConfig, TrainResult, train


def stop_after(out, stop, **settings):
    """Start a run in ``out`` (batch 8, lr 1e-3) and stop it right after its step-``stop`` checkpoint."""
    cfg = TrainConfig(**{"data": "synthetic:32:1", "batch_size": 8, "lr": 1e-3, "eval_n": 0, "log_every": 1, "workers": 0,
                         "progress": False, "device": "cpu", "out": str(out), **settings})  # fmt: skip
    train(cfg, stop_after=stop)
    return out


@pytest.fixture
def interrupted(tmp_path, tiny_model_files):
    """A 4-step run stopped right after its step-2 checkpoint."""
    return stop_after(tmp_path / "run", 2, model=tiny_model_files["spec"], pretrained=str(tiny_model_files["weights"]),
                      steps=4, ckpt_every=2)  # fmt: skip


def test_resume_continues_the_saved_config(cli, interrupted):
    config_before = (interrupted / "config.yaml").read_bytes()
    # options given with their saved value, or ones that do not change the result, are accepted
    res = cli("train", "--resume", "--out", interrupted, "--batch-size", "8", "--device", "cpu", "--workers", "0", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "trained 2 steps" in res.stdout and "4 steps in all" in res.stdout
    assert (interrupted / "config.yaml").read_bytes() == config_before
    steps = [json.loads(line)["step"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert [p.name for p in (interrupted / "checkpoints").iterdir()] == ["step_0000004"]


@pytest.mark.parametrize("option", [["--lr", "0.01"], ["--batch-size", "16"], ["--data", "synthetic:64"], ["--objectives", "siglip"]])
def test_resume_refuses_an_option_that_changes_the_run(cli, interrupted, option):
    before = {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()}
    res = cli("train", "--resume", "--out", interrupted, *option, "--no-progress")
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and f"{option[0]} {option[1]} differs" in res.output and "config.yaml" in res.output
    assert {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()} == before  # nothing written


def test_resume_in_python_refuses_a_changed_config(interrupted):
    cfg = TrainConfig(**{**_saved(interrupted), "lr": 0.02})
    with pytest.raises(InputError, match=r"lr='0.02' differs from the lr 0.001 the run was started with"):
        train(cfg, resume=True)
    assert not (interrupted / "checkpoints" / "step_0000004").exists()


def _saved(folder):
    import yaml

    from cliplab.train.config import RECORDED_FACTS

    data = yaml.safe_load((folder / "config.yaml").read_text())
    return {k: v for k, v in data.items() if k not in RECORDED_FACTS}


def test_a_locked_run_folder_is_refused_in_one_line(cli, interrupted):
    with open(interrupted / ".lock", "a") as held:  # another process's lock (flock is per open file)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = cli("train", "--resume", "--out", interrupted, "--no-progress")
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "locked by another training run" in res.output


def test_resume_clears_an_interrupted_writes_leftovers(cli, interrupted):
    partial = interrupted / "checkpoints" / ".step_0000003.k2j4h1.partial"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    tmp_model = interrupted / ".model.safetensors.a8b7c6.tmp"
    tmp_model.write_bytes(b"half")
    users = [interrupted / "checkpoints" / "notes.partial", interrupted / "model.safetensors.tmp"]
    for path in users:
        path.write_text("not cliplab's")
    res = cli("train", "--resume", "--out", interrupted, "--no-progress")
    assert res.exit_code == 0, res.output
    assert not partial.exists() and not tmp_model.exists()
    assert all(path.read_text() == "not cliplab's" for path in users)


def test_only_rank_0_prints_the_final_line(cli, monkeypatch, tmp_path):
    def other_rank(cfg, **kw):
        return TrainResult(tmp_path, cfg.steps, cfg.steps, False, 1.0, 8.0)

    monkeypatch.setattr("cliplab.train.trainer.train", other_rank)
    res = cli("train", "--steps", "2", "--out", tmp_path / "run", "--no-progress")
    assert res.exit_code == 0, res.output
    assert res.stdout == ""


@pytest.mark.parametrize("damage", ["state.pt", "model.safetensors"])
def test_a_damaged_checkpoint_is_one_line(cli, interrupted, damage):
    path = interrupted / "checkpoints" / "step_0000002" / damage
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    res = cli("train", "--resume", "--out", interrupted, "--no-progress")
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "step_0000002 cannot be read" in res.output and "delete that folder" in res.output


def _no_bigger_files_than(limit):
    def limit_writes():  # in the child: writes past the limit fail with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    out = stop_after(tmp_path / "run", 1, model="tiny", steps=2, ckpt_every=1)
    kept = {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}
    res = subprocess.run([sys.executable, "-m", "cliplab", "train", "--resume", "--out", str(out), "--no-progress"], capture_output=True,
                         text=True, timeout=300, preexec_fn=_no_bigger_files_than(1_000_000), check=False)  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr == f"error: file too large: {out / 'checkpoints' / 'step_0000002'}\n"
    assert {p: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()} == kept  # no partial step 2, step 1 intact
