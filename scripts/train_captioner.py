"""Train the bundled captioner of ``cliplab:shapes-tiny`` on synthetic scenes.

    python scripts/train_captioner.py                 # full recipe, into runs/captioner/
    python scripts/train_captioner.py --scenes 500 --steps 20 --out /tmp/cap   # smoke run
    python scripts/train_captioner.py --ship          # full recipe, then replace the shipped captioner

The frozen model's caption features (embedding and 2x2 grid tokens, ``cliplab.caption.features``) of
``--scenes`` train-split scenes (1-2 objects, seed ``--seed``) are embedded once through the feature
store, cached in the run folder (a rerun reads them back), then the captioner
(``cliplab.caption.Captioner``) is trained on the scenes' full captions, seeded. The captioner is saved
(weights as fp16) to ``OUT/captioner`` or, with ``--ship``, over ``src/cliplab/caption/bundled/shapes-tiny``,
with the run's log (loss every 50 steps, wall time) as ``training_log.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "cliplab:shapes-tiny"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=20000, help="training scenes (train split, 1-2 objects)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "captioner", help="run folder: feature cache, captioner, log")
    p.add_argument("--ship", action="store_true", help="save over the shipped captioner in src/cliplab/caption/bundled/, not in the run folder")
    return p.parse_args(argv)


def target_folder(out: Path, ship: bool) -> Path:
    """Where the captioner is saved: the shipped folder only when asked (``--ship``), else ``out/captioner``."""
    from cliplab.caption.captioner import BUNDLED_FOR

    return BUNDLED_FOR[MODEL] if ship else out / "captioner"


def main(argv: list[str] | None = None) -> None:
    import torch

    from cliplab.caption import Captioner
    from cliplab.data.sources.synthetic import synthetic_source

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cap = Captioner(MODEL, steps=args.steps, batch_size=args.batch_size, lr=args.lr, width=args.width, layers=args.layers, seed=args.seed)
    feats = cap.features(synthetic_source(args.scenes, seed=args.seed, split="train"), cache_dir=args.out / "cache", progress=True)
    embedded = time.perf_counter() - start
    print(f"caption features of {len(feats)} scenes in {embedded:.0f} s", file=sys.stderr, flush=True)
    cap.fit_features(feats.X, feats.captions, progress=True)
    wall = time.perf_counter() - start
    target = target_folder(args.out, args.ship)
    if target.exists():
        shutil.rmtree(target)
    cap.save(target)
    params = sum(p.numel() for p in cap.net_.parameters())
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "parameters": params, "features_s": round(embedded, 1),
           "wall_time_s": round(wall, 1), "history": cap.history_}  # fmt: skip
    (target / "training_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"saved {target} ({params / 1e6:.2f} M parameters, {size:.1f} MB) after {wall:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
