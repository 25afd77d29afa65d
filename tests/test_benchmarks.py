"""benchmarks/ and scripts/: runs record where they ran, the README's tables come from those records,
and the training scripts leave the shipped weights alone unless asked (issue #20 §6)."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = REPO / "scripts"
# these two import torch and cliplab at the top (their areas own the imports), so --help takes seconds
HEAVY_IMPORTS = {"service_load.py", "train_throughput.py"}
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni")


@pytest.fixture
def bench(monkeypatch):
    """The benchmarks folder on sys.path, as when a script there runs; returns ``import_module``."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module


def test_machine_info_has_every_field(bench):
    info = bench("_machine").machine_info()
    assert set(info) == {"cpu", "cores", "cpu_flags", "cuda", "python", "torch", "torch_threads", "load_average", "git_revision"}
    assert info["cpu"] and info["cores"] >= 1 and set(SPEED_FLAGS) <= set(info["cpu_flags"])
    assert all(isinstance(v, bool) for v in info["cpu_flags"].values())
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    assert len(info["load_average"]) == 3 and info["python"] == sys.version.split()[0]
    line = bench("_machine").describe(info)
    assert "\n" not in line and info["cpu"] in line and f"torch {torch.__version__}" in line


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_revision_is_short_hash_and_dirty_only_for_tracked_changes(bench, tmp_path):
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path, check=True,
                                    capture_output=True, text=True).stdout.strip()  # fmt: skip
    revision = bench("_machine").git_revision
    assert revision(tmp_path) is None  # not a checkout
    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-qm", "a")
    head = git("rev-parse", "--short=7", "HEAD")
    (tmp_path / "results.json").write_text("{}")  # untracked: what a benchmark writes
    assert revision(tmp_path) == head
    (tmp_path / "a.txt").write_text("b")
    assert revision(tmp_path) == f"{head}+dirty"


def benchmark_scripts() -> list:
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    return [pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name in HEAVY_IMPORTS else []) for p in scripts]


@pytest.mark.parametrize("script", benchmark_scripts())
def test_every_benchmark_help_offers_json_and_writes_nothing(script, tmp_path):
    result = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "--json" in result.stdout
    assert list(tmp_path.iterdir()) == []


MACHINE = {
    "cpu": "AMD EPYC", "cores": 2, "cpu_flags": {"avx2": True, "avx512f": False, "amx_bf16": False}, "cuda": [],
    "python": "3.11.7", "torch": "2.5.1", "torch_threads": 2, "load_average": [0.5, 0.25, 0.125], "git_revision": "350aafc+dirty",
}  # fmt: skip
MACHINE_LINE = "AMD EPYC (2 cores; avx2); torch 2.5.1, 2 threads; load 0.50 0.25 0.12; rev 350aafc+dirty"


def test_readme_tables_from_two_files(tmp_path):
    runs = {
        "a.json": {"benchmark": "synthetic_throughput", "command": "python benchmarks/synthetic_throughput.py --n 300",
                   "date": "2026-01-01T00:00:00+00:00", "machine": MACHINE,
                   "figures": {"images_per_s_per_core": 1062.3456, "ratio": 2.1246912}},
        "b.json": {"benchmark": "segment_speed", "command": "python benchmarks/segment_speed.py --images 1",
                   "date": "2026-01-01T00:00:00+00:00", "machine": {**MACHINE, "cuda": ["NVIDIA H200"]},
                   "figures": {"methods": {"vanilla": {"s_per_image": 0.5, "x_vanilla": 1.0},
                                           "naclip": {"s_per_image": 0.75, "x_vanilla": 1.5}}}},
    }  # fmt: skip
    for name, record in runs.items():
        (tmp_path / name).write_text(json.dumps(record))
    result = subprocess.run([sys.executable, str(BENCHMARKS / "readme_tables.py"), "a.json", "b.json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"""### segment_speed

`python benchmarks/segment_speed.py --images 1`: methods

| methods | s_per_image | x_vanilla |
|---|---|---|
| vanilla | 0.5 | 1 |
| naclip | 0.75 | 1.5 |

Machine: AMD EPYC (2 cores; avx2); GPU NVIDIA H200; torch 2.5.1, 2 threads; load 0.50 0.25 0.12; rev 350aafc+dirty

### synthetic_throughput

| command | images_per_s_per_core | ratio |
|---|---|---|
| `python benchmarks/synthetic_throughput.py --n 300` | 1062 | 2.125 |

Machine: {MACHINE_LINE}
"""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]


def test_readme_tables_reads_what_the_benchmarks_write(bench, tmp_path):
    argv = ["benchmarks/synthetic_throughput.py", "--n", "30", "--json", str(tmp_path / "x.json")]
    bench("_machine").write_json(tmp_path / "x.json", {"images_per_s_per_core": 700.0}, MACHINE, argv=argv)
    record = json.loads((tmp_path / "x.json").read_text())
    assert record["benchmark"] == "synthetic_throughput" and record["machine"] == MACHINE
    assert record["command"] == "python benchmarks/synthetic_throughput.py --n 30"
    assert bench("_machine").command_line(["b/search.py", "--json=r.json", "--types", "a b"]) == "python benchmarks/search.py --types 'a b'"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["date"])
    text = bench("readme_tables").render([tmp_path / "x.json"])
    assert f"| `{record['command']}` | 700 |" in text and f"Machine: {MACHINE_LINE}" in text


def test_readme_tables_refuses_other_json_in_one_line(tmp_path):
    (tmp_path / "other.json").write_text('{"rows": []}')
    result = subprocess.run([sys.executable, str(BENCHMARKS / "readme_tables.py"), "other.json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "other.json is not a benchmark --json file" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_readme_tables_are_the_committed_benchmark_results(bench):
    """The README's benchmark tables are made from benchmarks/results/*.json, not typed by hand."""
    tables = bench("readme_tables")
    results = sorted((BENCHMARKS / "results").glob("*.json"))
    assert results, "benchmarks/results/ holds the README's benchmark runs (bash benchmarks/refresh_results.sh)"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert tables.with_tables(readme, tables.render(results)) == readme, "run python benchmarks/readme_tables.py --readme README.md"


def test_a_figure_that_is_one_mapping_is_a_one_row_table(bench):
    record = {"command": "python benchmarks/x.py", "machine": MACHINE, "figures": {"gain_points": {"shape": -1.5, "size": 2.0}}}
    text = "\n".join(bench("readme_tables").benchmark_tables("x", [record]))
    assert "| gain_points | shape | size |\n|---|---|---|\n| gain_points | -1.5 | 2 |" in text


def test_readme_block_replacement(bench):
    tables = bench("readme_tables")
    text = f"intro\n{tables.BEGIN}\nold\n{tables.END}\nrest\n"
    assert tables.with_tables(text, "| a |\n") == f"intro\n{tables.BEGIN}\n\n| a |\n\n{tables.END}\nrest\n"
    with pytest.raises(ValueError, match="needs one line"):
        tables.with_tables("no markers", "x")


@pytest.mark.parametrize(("module", "bundled"), [("train_tiny", "shapes-tiny"), ("train_vit", "shapes-vit"),
                                                  ("train_vit_dense", "shapes-vit-dense")])
def test_training_scripts_write_the_shipped_weights_only_with_ship(scripts, module, bundled, tmp_path):
    from cliplab.models.bundled import BUNDLED, HERE

    script = scripts(module)
    args = script.parse_args([])
    assert args.out == REPO / "runs" / bundled and not args.ship
    target = script.weights_path(args.out, args.ship, BUNDLED[bundled])
    assert target.parent == args.out and HERE not in target.parents
    args = script.parse_args(["--out", str(tmp_path), "--ship"])
    assert script.weights_path(args.out, args.ship, BUNDLED[bundled]) == BUNDLED[bundled].weights


def test_finishing_a_run_without_ship_leaves_the_bundled_folder_alone(scripts, tmp_path):
    from safetensors.torch import save_file

    from cliplab.models.bundled import BUNDLED, HERE

    before = {p: p.stat().st_mtime_ns for p in HERE.rglob("*") if "__pycache__" not in p.parts}
    train_tiny = scripts("train_tiny")
    args = train_tiny.parse_args(["--out", str(tmp_path)])
    save_file({"w": torch.ones(2, 2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0, "logit_scale": 10.0}) + "\n")
    train_tiny.ship_run(args.out, train_tiny.weights_path(args.out, args.ship, BUNDLED["shapes-tiny"]), vars(args), 1.0)
    assert {p: p.stat().st_mtime_ns for p in HERE.rglob("*") if "__pycache__" not in p.parts} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.json", "metrics.jsonl", "model-fp16.safetensors", "model.safetensors"]


def test_a_run_shipping_one_tower_keeps_only_its_tensors(scripts, tmp_path):
    from safetensors.torch import load_file, save_file

    train_tiny = scripts("train_tiny")
    save_file({"visual.w": torch.ones(2), "logit_scale": torch.ones(()), "transformer.w": torch.ones(2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0, "logit_scale": 10.0}) + "\n")
    train_tiny.ship_run(tmp_path, tmp_path / "out.safetensors", {"steps": 1, "seed": 0}, 1.0, prefixes=("visual.", "logit_scale"))
    shipped = load_file(str(tmp_path / "out.safetensors"))
    assert sorted(shipped) == ["logit_scale", "visual.w"] and shipped["visual.w"].dtype == torch.float16


def test_objectives_runs_each_objective_alone_and_with_clip_and_skips_missing_ones(bench, monkeypatch):
    from cliplab.train.objectives import REGISTRY, Objective

    class BoxObjective(Objective):  # stands in for a region objective: its batch needs patch tokens
        name, needs = "boxes", frozenset({"regions"})

    monkeypatch.setitem(REGISTRY, "boxes", BoxObjective)
    objectives = bench("objectives")
    planned, missing = objectives.runs(["clip", "siglip", "boxes", "notyet"])
    assert planned == [("vit", "clip"), ("tiny", "clip"), ("vit", "siglip"), ("vit", "clip,siglip"), ("tiny", "siglip"),
                       ("tiny", "clip,siglip"), ("vit", "boxes"), ("vit", "clip,boxes")]  # fmt: skip
    assert missing == ["notyet"]
    assert objectives.delta({"a": 0.75, "b": None, "c": 0.5}, {"a": 0.5, "b": 0.25, "c": None}) == {"a": 0.25, "b": None, "c": None}


def test_data_side_starts_each_group_from_scratch_or_the_model_as_asked(bench):
    from cliplab.errors import InputError

    data_side = bench("data_side")
    Recipe = data_side.Recipe
    plan = data_side.recipes(data_side.parse_args([]))
    assert plan == {"noisy": Recipe("scratch", data_side.STEPS, 1e-3), "long": Recipe("model", 40, 5e-4), "tail": Recipe("lit", data_side.STEPS, 1e-3)}
    argv = ["--init", "model", "--long-init", "scratch", "--tail-init", "model", "--steps", "7", "--post-lr", "1e-4"]
    plan = data_side.recipes(data_side.parse_args(argv))
    assert plan == {"noisy": Recipe("model", 40, 1e-4), "long": Recipe("scratch", 7, 1e-3), "tail": Recipe("model", 40, 1e-4)}
    trained = data_side.start_model("cliplab:shapes-tiny", "model", 0)
    a, b = (data_side.start_model("tiny", "scratch", 0) for _ in range(2))
    assert a.identity == b.identity != trained.identity  # every variant starts from the same random init
    assert a.name == trained.name == "cliplab:shapes-tiny"
    lit = data_side.start_model("tiny", "lit", 0)  # LiT: the trained image tower, the seeded random text tower
    towers = {name: (lit.tower_modules()[name].state_dict(), m.tower_modules()[name].state_dict()) for name, m in (("image", trained), ("text", a))}
    for name, (got, want) in towers.items():
        assert all(torch.equal(got[k], want[k]) for k in want), name
    with pytest.raises(InputError, match="cliplab:NAME"):
        data_side.start_model("openclip:RN50", "scratch", 0)
