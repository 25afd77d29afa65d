"""One softmax in the package (issue #20 §3): scipy.special's, never a private copy."""

import ast
from pathlib import Path

import cliplab

PACKAGE = Path(cliplab.__file__).parent


def test_no_module_defines_its_own_softmax_or_logsumexp():
    defined = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name in {"softmax", "logsumexp", "log_softmax"}:
                defined.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    # the metrics' softmax(logits, temperature) is public API and only divides before scipy's softmax
    assert defined == ["evaluate/calibration.py:softmax"]
    body = (PACKAGE / "evaluate" / "calibration.py").read_text(encoding="utf-8")
    assert "scipy.special.softmax(" in body
