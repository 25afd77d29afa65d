"""Where a benchmark ran, recorded beside its figures (issue #20 §6).

Every script under ``benchmarks/`` takes ``--json FILE``; :func:`write_json` writes there
``{"benchmark", "command", "date", "machine", "figures"}``, ``machine`` being :func:`machine_info`.
``figures`` is the script's own: name -> number or text, and name -> {column: value} for a table of
rows (``readme_tables.py`` turns the files into the README's tables). Only the standard library is
imported at the top, so a script's ``--help`` stays instant; torch and cliplab load when measured.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def git_revision(folder: Path = HERE) -> str | None:
    """Short hash of the checkout holding ``folder``, with "+dirty" when tracked files have changes
    (``git describe --dirty`` leaves untracked files out, so the results a benchmark writes do not
    count); None outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--abbrev=7", "--dirty=+dirty", "--exclude=*"],
                             cwd=folder, capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, the CPU flags that decide speed, CUDA devices, torch version and threads,
    load average and git revision of this run. The flags come from ``cliplab.models.precision``, the
    same detection that picks a precision."""
    import torch

    from cliplab.models.precision import REPORTED_FLAGS, cpu_info

    info = cpu_info()
    cuda = torch.cuda.is_available()
    return {
        "cpu": info.model,
        "cores": info.cores,
        "cpu_flags": {flag: flag in info.flags for flag in REPORTED_FLAGS},
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,  # not on Windows
        "git_revision": git_revision(),
    }


def describe(machine: dict[str, Any]) -> str:
    """One line: CPU (cores; flags present), GPUs, torch and threads, load average, git revision."""
    flags = ", ".join(f for f, present in machine["cpu_flags"].items() if present) or "none of the speed flags"
    gpus = f"; GPU {', '.join(machine['cuda'])}" if machine["cuda"] else ""
    load = " ".join(f"{x:.2f}" for x in machine["load_average"]) if machine["load_average"] else "unknown"
    return (f"{machine['cpu']} ({machine['cores']} cores; {flags}){gpus}; torch {machine['torch']}, "
            f"{machine['torch_threads']} threads; load {load}; rev {machine['git_revision'] or 'unknown'}")  # fmt: skip


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json FILE`` option every benchmark takes."""
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the figures and the machine they ran on as JSON here")


def print_machine() -> dict[str, Any]:
    """Print what this run detected (one ``machine:`` line) and return it, to record it later."""
    machine = machine_info()
    print(f"machine: {describe(machine)}", flush=True)
    return machine


def command_line(argv: list[str]) -> str:
    """``python benchmarks/NAME.py ARGS`` for ``argv``, less its ``--json FILE`` (where the figures went
    is no part of how they were made)."""
    kept, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif not arg.startswith("--json="):
            kept.append(arg)
    return shlex.join(["python", f"benchmarks/{Path(argv[0]).name}", *kept])


def write_json(path: str | os.PathLike[str], figures: dict[str, Any], machine: dict[str, Any] | None = None,
               argv: list[str] | None = None) -> Path:  # fmt: skip
    """Write ``figures`` with the benchmark's name and command (from ``argv``, default ``sys.argv``),
    the UTC date and ``machine`` (default: :func:`machine_info` now) to ``path``, atomically."""
    from cliplab.files import write_json as write_atomically

    argv = sys.argv if argv is None else argv
    record = {
        "benchmark": Path(argv[0]).stem,
        "command": command_line(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine or machine_info(),
        "figures": figures,
    }
    return write_atomically(record, path)
