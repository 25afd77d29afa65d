"""Names a package exposes but imports on first use (PEP 562), so importing the package stays cheap."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str], globals_: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps a public name to the module it
    lives in, or to ``""`` for a subpackage ``package.name``; ``globals_`` is the package's ``globals()``."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name] or f"{package}.{name}")
        return module if not names[name] else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(set(globals_) | set(names))

    return __getattr__, __dir__
