"""Write two far-away image sets for OOD checks against the synthetic shape scenes:

- ``noise/``: uniform RGB noise;
- ``plasma/``: colour diamond-square fractals (cloud-like textures with the 1/f spectrum of photos).

    python benchmarks/ood_image_sets.py OUT_DIR [N] [SIZE]
    cliplab eval --task ood --images synthetic:500:7 --ood-images OUT_DIR/noise --out ood.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cliplab.evaluate.corruptions import plasma_fractal
from cliplab.files import atomic_target


def save(image: Image.Image, path: Path) -> None:
    with atomic_target(path) as tmp:
        image.save(tmp, "PNG")


def main(out: str, n: int = 500, size: int = 64) -> None:
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


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
