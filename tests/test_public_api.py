"""The public API, one rule: everything the README uses is importable as ``cliplab.X`` or
``cliplab.<subpackage>.X`` and listed in that package's ``__all__``; ``cliplab.embed`` is the
feature store's function, nothing else; no module is left that only re-exports another's names."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import cliplab
from cliplab.features import embed

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGE = ROOT / "src" / "cliplab"
# Modules that are a public short name on purpose (documented in their docstring), not a leftover.
FACADES = {"metrics.py"}
ENTRY_POINTS = ["load_model", "embed", "segment", "ZeroShotClassifier", "SearchIndex", "TrainConfig", "adapt", "search", "train"]


def test_embed_is_the_function_and_no_module_alias_is_registered():
    assert cliplab.embed is embed
    assert "cliplab.embed" not in sys.modules


def test_the_main_entry_points_are_at_the_top_level():
    from cliplab.adapt import GDA
    from cliplab.search import SearchIndex
    from cliplab.train import TrainConfig, train

    assert set(ENTRY_POINTS) <= set(cliplab.__all__)
    assert cliplab.SearchIndex is SearchIndex and cliplab.TrainConfig is TrainConfig
    assert cliplab.adapt.GDA is GDA and cliplab.train.train is train
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        cliplab.nothing_here  # noqa: B018


@pytest.mark.parametrize("name", [None, *[n for n in cliplab.__all__ if isinstance(getattr(cliplab, n), ModuleType)]])
def test_every_name_in_a_public_all_exists(name):
    package = cliplab if name is None else getattr(cliplab, name)
    assert isinstance(package.__all__, list) and package.__all__, f"{package.__name__} has no __all__"
    missing = [n for n in package.__all__ if not hasattr(package, n)]
    assert not missing, f"{package.__name__}.__all__ names what it lacks: {missing}"


def is_public(dotted: str) -> bool:
    """``cliplab.X`` or ``cliplab.<subpackage>.X`` listed in that package's ``__all__``, then attributes of X."""
    obj: object = cliplab
    for depth, part in enumerate(dotted.split(".")[1:]):
        if isinstance(obj, ModuleType) and (depth > 1 or part not in obj.__all__):
            return False
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def dotted_names(code: str) -> set[str]:
    """``cliplab...`` names a Python block uses: imports and attribute chains."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("cliplab")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cliplab"):
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Attribute):
            chain = ast.unparse(node)
            if re.fullmatch(r"cliplab(\.\w+)+", chain):
                names.add(chain)
    return names


def readme_names() -> set[str]:
    text = README.read_text(encoding="utf-8")
    names = set()
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        names |= dotted_names(code)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        names |= {m.group(0) for m in re.finditer(r"\bcliplab(?:\.\w+)+", span)}
    return names


def test_the_readme_uses_only_public_names():
    names = readme_names()
    assert "cliplab.load_model" in names and "cliplab.adapt.GDA" in names  # the scan finds code and prose
    private = sorted(n for n in names if not is_public(n))
    assert not private, f"README names internal paths: {private}"


def test_the_public_rule_refuses_module_paths():
    assert is_public("cliplab.adapt.GDA") and is_public("cliplab.metrics.classification_metrics")
    assert not is_public("cliplab.adapt.export.export_best") and not is_public("cliplab.files")


def only_reexports(tree: ast.Module) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):  # the docstring
            continue
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and "__all__" in ast.unparse(stmt).split("=")[0]:
            continue
        return False
    return True


def test_no_module_only_re_exports_another():
    shims = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if p.name != "__init__.py" and p.name not in FACADES and only_reexports(ast.parse(p.read_text(encoding="utf-8")))]  # fmt: skip
    assert not shims, f"modules that only re-export another's names under an old path: {shims}"


def test_the_command_line_and_the_package_start_without_torch():
    """`cliplab --help` and `import cliplab` load no torch, scikit-learn or FAISS: their names load on first use."""
    import subprocess
    import sys

    code = ("import sys; import cliplab; from cliplab.cli import _register; _register(); "
            "print(sorted(m for m in ('torch', 'sklearn', 'faiss', 'torchvision', 'open_clip') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
