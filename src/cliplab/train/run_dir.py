"""A run folder in use: one training process at a time, and what an interrupted run left half-written.

The lock is ``flock`` on ``OUT/.lock``: the kernel releases it when the process ends, however it
ends (``man 2 flock``), so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path
from typing import IO

from cliplab.errors import InputError

LOCK_FILE = ".lock"
# Temporary names cliplab's writers give the run's files (cliplab.files: ``.<name>.<random>.tmp``
# for files, ``.<name>.<random>.partial`` for folders); a run killed mid-write leaves them behind.
LEFTOVERS = ("checkpoints/.step_*.partial", ".model.safetensors.*.tmp", ".metrics.jsonl.*.tmp",
             ".summary.json.*.tmp", ".config.yaml.*.tmp")  # fmt: skip


def lock(run_dir: Path) -> IO:
    """Create ``run_dir`` and hold its lock until the returned file is closed (or the process ends)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a")  # an empty lock file: nothing to write atomically
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InputError(f"{run_dir} is locked by another training run; wait for it to end or choose another --out") from None
    return handle


def remove_leftovers(run_dir: Path) -> None:
    """Delete the temporary files and folders an interrupted run left in ``run_dir`` (hold its lock)."""
    for path in [p for pattern in LEFTOVERS for p in run_dir.glob(pattern)]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
