"""Synthetic scene generation speed: images/s on one core at 64 px.

    python benchmarks/synthetic_throughput.py [--n 3000] [--image-size 64] [--json FILE]

Target (issue #2): at least 500 images/s per core at 64 px. Generation runs in this one process,
so the figure is per core. The ratio printed is against that 500 images/s target.
"""

from __future__ import annotations

import argparse
import time

from _machine import add_json_option, print_machine, write_json

TARGET_PER_CORE = 500.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-objects", type=int, default=2)
    add_json_option(p)
    args = p.parse_args()
    from cliplab.data import synthetic

    machine = print_machine()
    synthetic.generate(50, seed=1, image_size=args.image_size)  # warm-up
    t0 = time.process_time()
    for _ in synthetic.iter_scenes(args.n, seed=0, image_size=args.image_size, max_objects=args.max_objects):
        pass
    cpu = time.process_time() - t0
    rate = args.n / cpu
    print(f"synthetic scenes: {args.n} images at {args.image_size}px, max {args.max_objects} objects")
    print(f"  {rate:.0f} images/s per core (CPU time)   target {TARGET_PER_CORE:.0f}   ratio {rate / TARGET_PER_CORE:.2f}x")
    if args.json:
        write_json(args.json, {"images_per_s_per_core": rate, "target": TARGET_PER_CORE, "ratio": rate / TARGET_PER_CORE}, machine)


if __name__ == "__main__":
    main()
