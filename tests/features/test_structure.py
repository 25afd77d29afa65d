"""The feature store stays in small pieces: no function in ``features/`` over 60 lines or 6 parameters
(issue #20: ``self``/``cls`` not counted, ``*args`` and ``**kwargs`` one each)."""

from __future__ import annotations

import ast
from pathlib import Path

import cliplab.features

MAX_LINES, MAX_PARAMS = 60, 6


def functions(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    named = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
    return len(named) + (a.vararg is not None) + (a.kwarg is not None)


def test_no_function_in_features_is_over_60_lines_or_6_parameters():
    files = sorted(Path(cliplab.features.__file__).parent.glob("*.py"))
    assert len(files) >= 5
    too_big = [
        f"{path.name}:{fn.lineno} {fn.name}: {fn.end_lineno - fn.lineno + 1} lines, {param_count(fn)} parameters"
        for path in files
        for fn in functions(path.read_text(encoding="utf-8"))
        if fn.end_lineno - fn.lineno + 1 > MAX_LINES or param_count(fn) > MAX_PARAMS
    ]
    assert too_big == []


def test_the_counts_follow_the_rule():
    src = "class C:\n    def f(self, a, b=1, *args, c, **kw):\n        pass\n"
    (fn,) = functions(src)
    assert param_count(fn) == 5 and fn.end_lineno - fn.lineno + 1 == 2
