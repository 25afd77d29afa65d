"""``cliplab.embed``: the function, also importable as the old name of the ``cliplab.features`` package.

The feature store used to be the package ``cliplab.embed``, which the function ``cliplab.embed``
hid. The package is now ``cliplab.features``; this module object keeps old imports
(``from cliplab.embed import Features``) working with a ``DeprecationWarning`` while
``cliplab.embed(model, source)`` stays the function it always was.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from cliplab.errors import warn


class _EmbedModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any):
        from cliplab.features import embed

        return embed(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        import cliplab.features as package

        warn(
            f"cliplab.embed.{name} moved to cliplab.features.{name}; the old name will be removed",
            DeprecationWarning,
        )
        return getattr(package, name)


def install() -> _EmbedModule:
    """Register the callable ``cliplab.embed`` module and return it."""
    module = _EmbedModule("cliplab.embed", __doc__)
    from cliplab.features import embed

    module.__wrapped__ = embed
    module.__signature__ = __import__("inspect").signature(embed)
    sys.modules["cliplab.embed"] = module
    return module
