"""Images/s of ``cliplab.embed`` with CPU and with device (GPU) decoding, against the naive loop and
the model alone, on CUDA when present, else on the CPU.

    python benchmarks/embed_gpu.py [--n 3000] [--batch-size B] [--precision auto] [--model openclip:ViT-B-32] [--json FILE]

Writes ``--n`` photo-like 400x300 JPEGs (``embed_throughput.photo_like``) and measures, in one
process, with one model (random init):

  naive       PIL decode + the model's preprocess + encode, batch by batch, one process;
  embed/cpu   ``cliplab.embed(decode="cpu")``: PIL decoding in worker processes;
  embed/gpu   ``cliplab.embed(decode="gpu")``: torchvision ``decode_jpeg`` and tensor preprocessing on
              the model's device (on a CPU-only machine: torchvision's CPU decoder, the same code);
  model only  the encoder on a ready random batch on the device.

Each embed run uses a fresh empty cache. Printed: the machine, the device name, the precision
``--precision`` resolved to and why, each rate, the min cosine between
the paths' embeddings, and a last line ``embed/model-only: R`` (the faster embed path).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import add_json_option, print_machine, write_json
from embed_throughput import write_images

if TYPE_CHECKING:
    import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from cliplab.models.precision import cpu_info

    info = cpu_info()
    return f"CPU: {info.model} ({info.cores} cores)"


def sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(model, batch_size: int, rounds: int = 3) -> float:
    import torch

    from cliplab.features.pipeline import draft_side

    side = draft_side(model) or 224
    x = torch.randn(batch_size, 3, side, side)
    model.encode_pixels(x[:2])
    best = float("inf")
    for _ in range(rounds):
        sync(model.device)
        t = time.perf_counter()
        model.encode_pixels(x)
        best = min(best, time.perf_counter() - t)
    return batch_size / best


def naive(model, paths: list[Path], batch_size: int) -> tuple[float, np.ndarray]:
    import torch

    t = time.perf_counter()
    out = []
    for i in range(0, len(paths), batch_size):
        pixels = []
        for path in paths[i : i + batch_size]:
            with Image.open(path) as im:
                pixels.append(model.preprocess(im.convert("RGB")))
        out.append(model.encode_pixels(torch.stack(pixels)))
    return len(paths) / (time.perf_counter() - t), np.concatenate(out)


def embedded(model, paths: list[Path], batch_size: int, decode: str, workers: int | None) -> tuple[float, np.ndarray, dict]:
    from cliplab.features import embed

    cache = Path(tempfile.mkdtemp(prefix="cliplab-gpu-bench-"))
    try:
        t = time.perf_counter()
        feats = embed(model, [str(p) for p in paths], cache_dir=cache, batch_size=batch_size, num_workers=workers,
                      progress=False, decode=decode)  # fmt: skip
        rate = len(feats) / (time.perf_counter() - t)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rate, feats.X, feats.stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 64 on the CPU")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--model", default="openclip:ViT-B-32")
    ap.add_argument("--workers", type=int, default=None, help="decode workers for embed/cpu (default: its own choice)")
    ap.add_argument("--images", type=Path, default=None, help="reuse/keep the JPEGs in this folder")
    add_json_option(ap)
    args = ap.parse_args()
    import torch

    from cliplab.features.pipeline import default_batch_size
    from cliplab.models import load_model
    from cliplab.models.precision import resolve_precision

    machine = print_machine()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision, why = resolve_precision(args.precision, device)
    batch_size = args.batch_size or default_batch_size(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = load_model(args.model, device=device, precision=precision)
    print(f"device: {device_name(device)}; torch {torch.__version__}; precision {args.precision} -> {precision}: {why}")
    random = " (random init)" if model.name.startswith("openclip:") else ""
    print(f"model: {model.name}{random}, precision {model.precision}, batch size {batch_size}")

    tmp = None
    folder = args.images
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="cliplab-gpu-img-")
        folder = Path(tmp)
    try:
        paths = sorted(folder.glob("400x300-*.jpg"))[: args.n]
        if len(paths) < args.n:
            paths = write_images(folder, args.n, (400, 300))
        print(f"{len(paths)} photo-like JPEGs, 400x300")
        embedded(model, paths[: min(len(paths), 2 * batch_size)], batch_size, "gpu", args.workers)  # warm-up
        rate_model = model_only(model, batch_size)
        rate_naive, x_naive = naive(model, paths, batch_size)
        rate_cpu, x_cpu, s_cpu = embedded(model, paths, batch_size, "cpu", args.workers)
        rate_gpu, x_gpu, _ = embedded(model, paths, batch_size, "gpu", args.workers)
        print(f"naive loop (PIL, one process): {rate_naive:9.1f} img/s")
        print(f"cliplab.embed, CPU decoding:   {rate_cpu:9.1f} img/s  ({s_cpu['num_workers']} workers)")
        print(f"cliplab.embed, device decoding:{rate_gpu:9.1f} img/s  (decode on {device.type})")
        print(f"model alone on ready tensors:  {rate_model:9.1f} img/s")
        cos = lambda a, b: float((a * b).sum(1).min())
        print(f"min cosine: naive vs embed/cpu {cos(x_naive, x_cpu):.6f}, naive vs embed/gpu {cos(x_naive, x_gpu):.6f}, "
              f"embed/cpu vs embed/gpu {cos(x_cpu, x_gpu):.6f}")  # fmt: skip
        print(f"embed/naive: {max(rate_cpu, rate_gpu) / rate_naive:.2f}x")
        print(f"embed/model-only: {max(rate_cpu, rate_gpu) / rate_model:.2f}")
        if args.json:
            figures = {"device": device_name(device), "precision": model.precision, "batch_size": batch_size, "images": len(paths),
                       "naive_img_s": rate_naive, "embed_cpu_img_s": rate_cpu, "embed_gpu_img_s": rate_gpu, "model_only_img_s": rate_model,
                       "min_cosine": min(cos(x_naive, x_cpu), cos(x_naive, x_gpu)),
                       "embed_vs_naive": max(rate_cpu, rate_gpu) / rate_naive, "embed_vs_model_only": max(rate_cpu, rate_gpu) / rate_model}  # fmt: skip
            write_json(args.json, figures, machine)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
