"""Write two far-away image sets for OOD checks against the synthetic shape scenes:

- ``noise/``: uniform RGB noise;
- ``plasma/``: colour diamond-square fractals (cloud-like textures with the 1/f spectrum of photos).

    python benchmarks/ood_image_sets.py OUT_DIR [N] [SIZE] [--json FILE]
    cliplab eval --task ood --images synthetic:500:7 --ood-images OUT_DIR/noise --out ood.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _machine import add_json_option, print_machine, write_json


def save(image: Image.Image, path: Path) -> None:
    from cliplab.files import atomic_target

    with atomic_target(path) as tmp:
        image.save(tmp, "PNG")


def main(out: str, n: int = 500, size: int = 64) -> None:
    from cliplab.evaluate.corruptions import plasma_fractal

    rng = np.random.default_rng(0)
    for name in ("noise", "plasma"):
        (Path(out) / name).mkdir(parents=True, exist_ok=True)
    side = 1 << int(np.ceil(np.log2(size)))
    for i in range(n):
        noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        save(Image.fromarray(noise), Path(out) / "noise" / f"{i:04d}.png")
        channels = [plasma_fractal(side, float(rng.uniform(1.4, 2.2)), rng)[:size, :size] for _ in range(3)]
        save(Image.fromarray(np.uint8(np.stack(channels, -1) * 255)), Path(out) / "plasma" / f"{i:04d}.png")
    print(f"wrote {n} noise and {n} plasma images of {size} px under {out}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write noise/ and plasma/ image sets (far from the shape scenes) for OOD checks.")
    parser.add_argument("out", help="folder to write noise/ and plasma/ under")
    parser.add_argument("n", nargs="?", type=int, default=500, help="images per set (default 500)")
    parser.add_argument("size", nargs="?", type=int, default=64, help="image side in pixels (default 64)")
    add_json_option(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    machine = print_machine()
    t0 = time.perf_counter()
    main(args.out, args.n, args.size)
    if args.json:
        write_json(args.json, {"images": 2 * args.n, "size": args.size, "images_per_s": 2 * args.n / (time.perf_counter() - t0)}, machine)
