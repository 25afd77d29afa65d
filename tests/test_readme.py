"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    from cliplab.cli.data import write_scenes

    code = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    write_scenes(tmp_path / "scenes", 24, 0, "test", 64, 1, "shape", False, progress=False)
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: printed.append(a)})
    assert len(printed) == 2 and 0.0 <= printed[0][0] <= 1.0  # the accuracy, then the metrics
    assert "acc1" in printed[1][0]
