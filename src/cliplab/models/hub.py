"""Hugging Face cache location and offline mode, read from the environment at call time.

``huggingface_hub`` reads ``HF_HUB_OFFLINE`` / ``HF_HOME`` / ``HF_HUB_CACHE`` once, at import. The
loaders pass ``cache_dir`` and ``local_files_only`` explicitly so that a change made later in the
process (a test, a notebook, the CLI's ``--offline``) is honoured.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "on", "yes", "true"}


def offline() -> bool:
    """True when downloads are off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set now or at import)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of open_clip
        return False


def cache_dir() -> str:
    """The hub cache folder (``.../hub``) the environment names now."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    try:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    except ImportError:  # pragma: no cover
        xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
        return os.path.join(xdg, "huggingface", "hub")


def download_hint() -> str:
    return "downloads are off (HF_HUB_OFFLINE is set)" if offline() else "it could not be downloaded"
