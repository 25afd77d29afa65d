"""The one way cliplab writes a file: a unique temporary name in the same folder, fsync, rename.

A reader never sees a half-written file, a crash leaves no partial output under the real name, and
the temporary file is removed on any failure. Written files get the usual permissions (0666 less
the umask), not the 0600 of ``mkstemp``.

    atomic_write(path, b"bytes" or "text")
    write_json(data, path)
    with atomic_target(path) as tmp: torch.save(obj, tmp)        # for libraries that write by path
    with atomic_folder(path) as tmp: ...write many files into tmp...
    remove_leftovers(path)                                       # what a killed writer left
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from cliplab.errors import InputError


DEFAULT_UMASK = 0o022  # the usual default where the process umask cannot be read (not Linux, or Linux < 4.7)


def _umask() -> int:
    """The process umask, read from the "Umask:" line of /proc/self/status (Linux >= 4.7, see
    proc(5)) so the umask is never changed, not even for a moment; ``DEFAULT_UMASK`` elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return DEFAULT_UMASK


def _prepare_parent(path: Path) -> None:
    """Create ``path``'s folder; one clear error when something in the way is a file."""
    parent = path.parent
    for p in (parent, *parent.parents):
        if p.exists() and not p.is_dir():
            raise InputError(f"output path {path}: {p} exists and is a file, not a folder")
        if p.exists():
            break
    parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise InputError(f"output path exists and is a folder: {path}; pass a file name")


@contextmanager
def atomic_target(path: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``."""
    path = Path(path)
    _prepare_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files ``atomic_target`` left beside ``path`` when a writer was killed
    (``.<name>.<8 characters of mkstemp>.tmp``, nothing else); returns what was removed.

    Call it before writing ``path`` again, where no other process writes the same output.
    """
    path = Path(path)
    # mkstemp's random part: 8 of "a-z0-9_" (CPython's tempfile._RandomNameSequence)
    ours = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    removed = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            if ours.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def atomic_write(path: str | os.PathLike[str], data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding``) to ``path`` atomically."""
    blob = data.encode(encoding) if isinstance(data, str) else data
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(blob)
    return Path(path)


def write_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON (numpy arrays and paths converted) to ``path`` atomically."""
    return atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False, default=jsonable) + "\n")


def jsonable(obj: Any) -> Any:
    """``json.dumps`` default: arrays and numpy scalars as lists/numbers, paths as strings, dataclasses with to_json."""
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` (which must be absent or empty)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path} already exists and is not empty; choose a new output folder")
    _prepare_parent(path.parent / f".{path.name}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
