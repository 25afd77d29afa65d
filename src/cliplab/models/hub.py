"""Hugging Face cache location and offline mode, read from the environment at call time.

``huggingface_hub`` reads ``HF_HUB_OFFLINE`` / ``HF_HOME`` / ``HF_HUB_CACHE`` once, at import. The
loaders pass ``cache_dir`` and ``local_files_only`` explicitly so that a change made later in the
process (a test, a notebook) is honoured.

Offline is decided once per process: set by ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``, or found
by one connection attempt to the hub with a short timeout. Without it, a machine with no network
would retry every download for half a minute before failing.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

_TRUE = {"1", "on", "yes", "true"}
PROBE_TIMEOUT_S = 3.0


def offline_by_setting() -> bool:
    """True when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set (now or at import)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of open_clip
        return False


def endpoint_host() -> str:
    """The host downloads come from (``HF_ENDPOINT`` or huggingface.co)."""
    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


@lru_cache(maxsize=8)
def reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection attempt to ``host`` (name lookup included) within ``timeout`` seconds; cached."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)  # a name lookup ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def offline() -> bool:
    """True when downloads are off by setting, or the hub cannot be reached (checked once)."""
    return offline_by_setting() or not reachable(endpoint_host())


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
    """Why a file that is not cached could not be had, in words."""
    if offline_by_setting():
        return "downloads are off (HF_HUB_OFFLINE is set)"
    if not reachable(endpoint_host()):
        return f"{endpoint_host()} cannot be reached (no network; checked once with a {PROBE_TIMEOUT_S:g} s timeout)"
    return "it could not be downloaded"
