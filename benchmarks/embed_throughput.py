"""Images/s of ``cliplab.embed`` against the straightforward loop, on this machine.

    python benchmarks/embed_throughput.py [--n 512] [--batch-size 64] [--repeats 1] [--ablate] [--json FILE]

Writes ``--n`` photo-like JPEGs (~400x300: smooth gradients, shapes, sensor noise, quality 90) to a
temporary folder and embeds them with a random-init open_clip ViT-B-32 (224 px) in two ways, with
the same model and batch size:

  naive   one process: for each batch, ``Image.open`` + ``model.preprocess`` every file, then
          ``model.encode_pixels`` (which already runs under ``torch.inference_mode``);
  embed   ``cliplab.embed`` with a fresh, empty ``cache_dir`` (so every image is decoded and encoded,
          and the chunks are written).

``embed`` runs at every precision the machine runs natively (fp32; bf16 where the CPU has
avx512_bf16/amx_bf16; int8 where it has int8 kernels), each with the same weights; its embeddings
are compared with the naive fp32 loop's (min/mean cosine). ``--repeats`` alternates the methods
(naive, embed at each precision, naive, ...) and keeps the best of each, because the machine may be
shared. Also printed: the fp32 matmul peak (a 2048^2 ``torch.mm``) and the encoder's own images/s
on a ready tensor. The last line is ``ratio best/naive: R.RRx (precision P, min cosine C)``, "best"
being ``cliplab.embed`` at the fastest precision whose min cosine to fp32 is >= 0.999.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from _machine import add_json_option, print_machine, write_json


# --- data ------------------------------------------------------------------------------------------
def photo_like(rng: np.random.Generator, w: int = 400, h: int = 300) -> Image.Image:
    """Smooth colour gradients, a few filled shapes and sensor noise (so JPEG decoding costs what it
    costs on photos). Sizes are relative to 400x300; big images draw their gradients at 400 px wide
    and upscale them (the noise is always full resolution)."""
    k = max(1, w // 400)
    bw, bh = w // k, h // k
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    img = np.empty((bh, bw, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-1, 1, 3)
        img[..., c] = 128 + 60 * np.sin(a * xx / 40 + b * yy / 50 + phase * 6) + rng.uniform(-40, 40) * xx / bw
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 10))):
        x0, y0 = int(rng.integers(0, bw)), int(rng.integers(0, bh))
        box = [x0, y0, x0 + int(rng.integers(20, 150)), y0 + int(rng.integers(20, 120))]
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.integers(0, 2) else draw.rectangle)(box, fill=color)
    if k > 1:
        im = im.resize((w, h), Image.BILINEAR)
    noise = rng.normal(0, 8, (h, w, 3)) if k == 1 else rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    noisy = np.asarray(im).astype(np.int16) + noise.astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_images(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{size[0]}x{size[1]}-{i:05d}.jpg"
        photo_like(rng, *size).save(path, quality=90)
        paths.append(path)
    return paths


# --- model ---------------------------------------------------------------------------------------
def load_vitb32(precision: str = "fp32"):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from cliplab.models import load_model
        except ImportError:
            return _fallback_model(precision)
        torch.manual_seed(0)
        return load_model("openclip:ViT-B-32", device="cpu", precision=precision)


def _fallback_model(precision: str):
    """A minimal ``Model`` over open_clip, for when ``cliplab.models.load_model`` is not there."""
    import open_clip
    import torch

    from cliplab.models.base import Model

    torch.manual_seed(0)
    module, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")

    class Bare(Model):
        name, device, embed_dim = "openclip:ViT-B-32", torch.device("cpu"), 512
        identity = f"openclip:ViT-B-32|random-seed-0|{precision}"

        def tokenize(self, texts):
            raise NotImplementedError

        def token_counts(self, texts):
            raise NotImplementedError

        def image_features(self, pixels):
            return self.torch_module.encode_image(pixels)

        def text_features(self, tokens):
            raise NotImplementedError

    m = Bare()
    m.torch_module, m.preprocess, m.precision = module.eval(), preprocess, precision
    return m


# --- measurements --------------------------------------------------------------------------------
def matmul_gflops(n: int = 2048, seconds: float = 1.5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def encoder_only(model, batch_size: int, batches: int = 2) -> float:
    import torch

    x = torch.randn(batch_size, 3, 224, 224)
    model.encode_pixels(x[:2])
    t = time.perf_counter()
    for _ in range(batches):
        model.encode_pixels(x)
    return batches * batch_size / (time.perf_counter() - t)


def decode_preprocess(model, paths: list[Path], fast_jpeg: bool, threads: int) -> float:
    """Images/s of read + decode + preprocess alone, in this process with ``threads`` torch threads."""
    import torch

    from cliplab.data.images import decode_image
    from cliplab.features.pipeline import draft_side

    draft = draft_side(model) if fast_jpeg else None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        for path in paths:
            model.preprocess(decode_image(path.read_bytes(), str(path), None, min_side=2 * draft if draft else None))
        return len(paths) / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)


def naive(model, paths: list[Path], batch_size: int, preprocess_threads: int | None = None) -> tuple[float, np.ndarray]:
    """The honest straightforward loop: open, preprocess and encode, batch by batch, one process.

    ``preprocess_threads`` (ablation only) switches torch to that many threads while preprocessing.
    """
    import torch

    threads = torch.get_num_threads()
    t = time.perf_counter()
    out = []
    for i in range(0, len(paths), batch_size):
        pixels = []
        if preprocess_threads:
            torch.set_num_threads(preprocess_threads)
        for path in paths[i : i + batch_size]:
            with Image.open(path) as im:
                pixels.append(model.preprocess(im.convert("RGB")))
        torch.set_num_threads(threads)
        out.append(model.encode_pixels(torch.stack(pixels)))
    return len(paths) / (time.perf_counter() - t), np.concatenate(out)


def pipelined(model, paths: list[Path], batch_size: int, workers: int | None, **kw) -> tuple[float, np.ndarray, dict]:
    from cliplab.features import embed

    cache = Path(tempfile.mkdtemp(prefix="cliplab-bench-cache-"))
    try:
        t = time.perf_counter()
        feats = embed(model, [str(p) for p in paths], cache_dir=cache, batch_size=batch_size, num_workers=workers,
                      progress=False, **kw)
        rate = len(feats) / (time.perf_counter() - t)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rate, feats.X, feats.stats


def precisions_here() -> list[str]:
    """Every precision this machine runs natively (fp32 always; bf16 with avx512_bf16/amx_bf16; int8
    with int8 kernels), detected at run time."""
    import torch

    from cliplab.models.precision import int8_supported, native_bf16

    found = ["fp32"]
    if native_bf16(torch.device("cpu")):
        found.append("bf16")
    if int8_supported():
        found.append("int8")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="decode workers for embed (default: its own choice)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ablate", action="store_true", help="also time embed without workers / without reduced "
                    "JPEG decoding, and the naive loop with 1 torch thread while preprocessing")
    ap.add_argument("--photo-size", default="400x300", help="WxH of the generated JPEGs (e.g. 4032x3024)")
    ap.add_argument("--images", type=Path, default=None, help="reuse/keep the JPEGs in this folder")
    add_json_option(ap)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.photo_size.lower().split("x"))
    import torch

    machine = print_machine()  # before the work: the load average is the machine's, not ours
    gflops = matmul_gflops()
    print(f"fp32 matmul peak: {gflops:.1f} GFLOP/s (2048x2048 torch.mm, {torch.get_num_threads()} threads)")

    tmp = None
    folder = args.images
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="cliplab-bench-img-")
        folder = Path(tmp)
    paths = sorted(folder.glob(f"{size[0]}x{size[1]}-*.jpg"))[: args.n]
    if len(paths) < args.n:
        t = time.perf_counter()
        paths = write_images(folder, args.n, size)
        print(f"wrote {len(paths)} JPEGs in {time.perf_counter() - t:.1f}s")
    kib = sum(p.stat().st_size for p in paths) / len(paths) / 1024
    print(f"{len(paths)} photo-like JPEGs, {size[0]}x{size[1]}, {kib:.0f} KiB on average")
    try:
        model = load_vitb32("fp32")
        print(f"model: {model.name} (random init), batch size {args.batch_size}")
        enc = encoder_only(model, args.batch_size)
        sample = paths[: min(len(paths), 64)]
        threads = torch.get_num_threads()
        dec_main = decode_preprocess(model, sample, fast_jpeg=False, threads=threads)
        dec_one = decode_preprocess(model, sample, fast_jpeg=False, threads=1)
        dec_fast = decode_preprocess(model, sample, fast_jpeg=True, threads=1)
        ms = lambda rate: f"{1e3 / rate:.1f} ms/img"
        print(f"encoder alone on ready tensors: {enc:.2f} img/s ({ms(enc)})")
        print(f"read+decode+preprocess alone: {ms(dec_main)} with {threads} torch threads (as in the naive loop), "
              f"{ms(dec_one)} with 1 (as in a worker), {ms(dec_fast)} with 1 and reduced-scale JPEG decoding")
        serial = 1 / (1 / dec_main + 1 / enc)
        print(f"  -> serial loop <= {serial:.2f} img/s; decode overlapped with the encoder <= {min(enc, dec_fast):.2f} img/s")
        precisions = precisions_here()
        # load_vitb32 seeds the random init, so every precision starts from the same fp32 weights
        models = {p: load_vitb32(p) if p != "fp32" else model for p in precisions}
        print(f"precisions this machine runs natively: {', '.join(precisions)}")
        best_naive, best = 0.0, {p: 0.0 for p in precisions}
        outputs, stats = {}, {}
        for r in range(args.repeats):  # alternate the methods, keep the best of each
            rate_n, x_naive = naive(model, paths, args.batch_size)
            best_naive = max(best_naive, rate_n)
            line = [f"naive {rate_n:.2f}"]
            for p in precisions:
                rate, outputs[p], stats[p] = pipelined(models[p], paths, args.batch_size, args.workers)
                best[p] = max(best[p], rate)
                line.append(f"embed[{p}] {rate:.2f}")
            print(f"  round {r + 1} (img/s): " + ", ".join(line))
        print(f"naive loop (fp32): {best_naive:.2f} img/s")
        print(f"{'precision':>9} | {'embed img/s':>11} | {'x naive':>7} | {'min cos':>8} | {'mean cos':>8}")
        fidelity, table = {}, {}
        for p in precisions:
            cos = (outputs[p] * x_naive).sum(1)
            fidelity[p] = float(cos.min())
            table[p] = {"embed_img_s": best[p], "x_naive": best[p] / best_naive, "min_cosine": fidelity[p], "mean_cosine": float(cos.mean())}
            print(f"{p:>9} | {best[p]:>11.2f} | {best[p] / best_naive:>6.2f}x | {cos.min():>8.5f} | {cos.mean():>8.5f}")
        s32 = stats["fp32"]
        print(f"(embed: workers {s32.get('num_workers')}, torch threads {s32.get('torch_threads')})")

        faithful = [p for p in precisions if fidelity[p] >= 0.999]
        top = max(faithful, key=lambda p: best[p])
        figures = {"images": len(paths), "photo_size": args.photo_size, "matmul_gflops": gflops, "encoder_img_s": enc,
                   "naive_img_s": best_naive, "best_precision": top, "ratio_best_naive": best[top] / best_naive}  # fmt: skip
        if args.ablate:
            print("ablations (fp32, one run each):")
            rate, _ = naive(model, paths, args.batch_size, preprocess_threads=1)
            figures["ablate_naive_1_thread_img_s"] = rate
            print(f"  naive loop, 1 torch thread while preprocessing: {rate:.2f} img/s ({rate / best_naive:.2f}x naive)")
            rate, _, _ = pipelined(model, paths, args.batch_size, 0)
            figures["ablate_embed_no_workers_img_s"] = rate
            print(f"  embed, num_workers=0 (decode in the main process): {rate:.2f} img/s ({rate / best_naive:.2f}x naive)")
            rate, _, _ = pipelined(model, paths, args.batch_size, args.workers, fast_jpeg=False)
            figures["ablate_embed_full_jpeg_img_s"] = rate
            print(f"  embed, fast_jpeg=False (full-size JPEG decoding): {rate:.2f} img/s ({rate / best_naive:.2f}x naive)")

        print(f"ratio best/naive: {best[top] / best_naive:.2f}x (precision {top}, min cosine {fidelity[top]:.5f})")
        if args.json:
            write_json(args.json, {**figures, "precisions": table}, machine)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
