"""benchmarks/ood_image_sets.py: a command line that means what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ood_image_sets.py"


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_prints_usage_and_writes_nothing(tmp_path):
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("usage:") and "out" in result.stdout
    assert list(tmp_path.iterdir()) == []
    bad = run(tmp_path / "x", "many", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid int value: 'many'" in bad.stderr and list(tmp_path.iterdir()) == []


def test_writes_n_images_per_set(tmp_path):
    result = run(tmp_path / "ood", 2, 8, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(tmp_path / "ood").as_posix() for p in (tmp_path / "ood").rglob("*.png")) == [
        "noise/0000.png", "noise/0001.png", "plasma/0000.png", "plasma/0001.png"]  # fmt: skip
