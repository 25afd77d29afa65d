"""``cliplab un2clip``: writes a model folder that every command loads; refuses what it cannot do in one line."""

from __future__ import annotations

import json

FAST = ["--decoder-steps", "3", "--steps", "2", "--batch-size", "4", "--no-progress", "--device", "cpu"]


def test_un2clip_writes_a_model_folder_that_eval_loads(cli, model_args, tmp_path):
    out = tmp_path / "u2"
    result = cli("un2clip", *model_args, "--data", "synthetic:8:1", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "decoder loss" in result.stdout and "CPU" in result.stdout and f"--model {out}" in result.stdout
    summary = json.loads((out / "un2clip.json").read_text())
    assert summary["method"] == "un2clip" and summary["config"]["steps"] == 2 and summary["n_images"] == 8
    assert json.loads((out / "cliplab_model.json").read_text())["kind"] == "clip"
    scores = tmp_path / "mmvp.json"
    evaluated = cli("eval", "mmvp", "--model", str(out), "--pairs", "2", "--out", scores, "--no-progress")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(scores.read_text())["model"] == str(out.resolve())


def test_refusals_are_one_line_and_leave_nothing(cli, model_args, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    result = cli("un2clip", *model_args, "--data", "synthetic:8", "--out", full, *FAST)
    assert result.exit_code == 2 and "not empty" in result.stderr and (full / "keep.txt").read_text() == "mine"
    result = cli("un2clip", *model_args, "--data", "synthetic:1", "--out", tmp_path / "a", *FAST)
    assert result.exit_code == 2 and "at least 2" in result.stderr and not (tmp_path / "a").exists()
    result = cli("un2clip", *model_args, "--data", "synthetic:8", "--out", tmp_path / "b", "--lr", "0", *FAST)
    assert result.exit_code == 2 and "lr" in result.stderr and not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["full"]


def test_the_flags_default_to_the_library_settings(app):
    """The command's defaults are ``Un2ClipConfig``'s (the command line loads no torch, so it repeats them)."""
    import dataclasses

    import typer

    from cliplab.train.un2clip import Un2ClipConfig

    command = typer.main.get_command(app).get_command(None, "un2clip")
    defaults = {p.name: p.default for p in command.params}
    library = dataclasses.asdict(Un2ClipConfig())
    assert set(library) - set(defaults) == {"decoder_width", "weight_decay", "grad_clip"}  # library-only settings
    assert {k: defaults[k] for k in library if k in defaults} == {k: v for k, v in library.items() if k in defaults}
