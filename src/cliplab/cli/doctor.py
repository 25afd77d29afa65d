"""``cliplab doctor``: what this machine offers for embedding, and the precision ``auto`` picks."""

from __future__ import annotations


import typer

from cliplab.cli import app
from cliplab.cli.common import OutJsonOption, user_errors
from cliplab.files import write_json


def machine_report() -> dict:
    """Cores, the CPU flags that decide precision, CUDA devices, torch threads, engines, auto's choice."""
    import torch

    from cliplab.features.cache_folder import default_cache_dir
    from cliplab.models.precision import (
        REPORTED_FLAGS,
        auto_precision,
        cpu_info,
        int8_engine,
        int8_supported,
    )

    info = cpu_info()
    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    device = torch.device("cuda" if cuda else "cpu")
    chosen, why = auto_precision(device)
    return {
        "cpu": info.model,
        "cores": info.cores,
        "cpu_flags": {flag: flag in info.flags for flag in REPORTED_FLAGS},
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": devices,
        "int8_engine": int8_engine() if int8_supported() else None,
        "default_device": device.type,
        "auto_precision": chosen,
        "auto_reason": why,
        "cache_folder": str(default_cache_dir()),
    }


@app.command("doctor")
def doctor_command(out: OutJsonOption = None) -> None:
    """Show what was detected (CPU, cores, flags that matter, CUDA, torch threads) and the precision auto picks."""
    with user_errors():
        report = machine_report()
        if out is not None:
            write_json(report, out)
    flags = report["cpu_flags"]
    have = ", ".join(f for f, on in flags.items() if on) or "none"
    lack = ", ".join(f for f, on in flags.items() if not on) or "none"
    typer.echo(f"cpu: {report['cpu']} ({report['cores']} usable cores)")
    typer.echo(f"cpu flags that matter: has {have}; lacks {lack}")
    typer.echo(f"torch {report['torch']}, {report['torch_threads']} threads; int8 kernels: {report['int8_engine'] or 'none'}")
    typer.echo(f"cuda: {', '.join(report['cuda']) if report['cuda'] else 'none'}")
    typer.echo(f"precision auto on {report['default_device']}: {report['auto_precision']} ({report['auto_reason']})")
    typer.echo(f"embedding cache: {report['cache_folder']}")
