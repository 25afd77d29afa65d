"""Seconds per 448x448 image for each dense method, ViT-B-16 with random weights, 224/112 sliding window.

    PYTHONPATH=src python benchmarks/segment_speed.py [--arch ViT-B-16] [--images 2] [--threads 2] [--json FILE]

Prints one row per method: seconds per image and the ratio against ``vanilla`` (the unmodified
last block), all in one process. Random weights do the same arithmetic as pretrained ones.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from PIL import Image

from _machine import add_json_option, print_machine, write_json

CLASSES = ["sky", "road", "car", "tree", "building", "person", "grass", "water", "bicycle", "sign"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--images", type=int, default=2, help="timed images per method (after one warm-up image)")
    p.add_argument("--size", type=int, default=448)
    p.add_argument("--window", type=int, default=224)
    p.add_argument("--stride", type=int, default=112)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    add_json_option(p)
    args = p.parse_args()
    import torch

    from cliplab.dense.attention import METHODS
    from cliplab.dense.segment import Segmenter
    from cliplab.models import load_model

    torch.set_num_threads(args.threads)
    machine = print_machine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(f"openclip:{args.arch}", device=args.device)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)) for _ in range(args.images + 1)]
    print(f"{args.arch} (random weights), {args.size}x{args.size}, window {args.window} stride {args.stride}, "
          f"{len(CLASSES)} classes, {args.device}, {args.threads} threads")  # fmt: skip
    rows = {}
    for method in METHODS:
        seg = Segmenter(model, CLASSES, method=method, size=args.size, window=args.window, stride=args.stride)
        seg(images[0])  # warm-up
        t0 = time.perf_counter()
        for im in images[1:]:
            seg(im)
        rows[method] = (time.perf_counter() - t0) / args.images
    for method, seconds in rows.items():
        print(f"{method:>10s}  {seconds:7.3f} s/image  {seconds / rows['vanilla']:5.2f}x vanilla")
    if args.json:
        table = {method: {"s_per_image": s, "x_vanilla": s / rows["vanilla"]} for method, s in rows.items()}
        write_json(args.json, {"methods": table}, machine)


if __name__ == "__main__":
    main()
