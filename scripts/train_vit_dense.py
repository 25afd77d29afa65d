"""Post-train the bundled ViT into ``cliplab:shapes-vit-dense``: region-aware training (issue #21).

    python scripts/train_vit_dense.py                 # the recipe, resumes from runs/shapes-vit-dense/
    python scripts/train_vit_dense.py --steps 4 --eval-n 0 --out /tmp/vd   # smoke run
    python scripts/train_vit_dense.py --ship          # the recipe, then replace the shipped weights

A thin call of the trainer (``cliplab.train``), the same as
``cliplab train --model cliplab:shapes-vit --data synthetic:20000 --objectives clip,grain,declip:4,cloc --prompter masked-class
--lock-text --region-exclude heart,crescent --steps 300 --batch-size 64 --lr 2e-4 --warmup 30 --weight-decay 0``: the
image tower learns, against the frozen text tower, CLIP's loss on the scenes' captions, GRAIN's region
terms on each object's box and phrase (boxes and phrases only, never masks), DeCLIP's content and
context terms against the frozen start, weighted 4 (the content term pulls box-pooled tokens towards the
start's embedding of the box kept in place; they also keep the background tokens where they were: with
``clip,grain`` alone they drift towards the shapes' text as training goes on), and CLOC's region loss
read through the tower's masked class token (each box's copy of the class token attends only to the
box's cells; ``cliplab.dense.masked_class``), the region prompter the shipped model keeps. "heart" and "crescent" are
kept out of every region phrase (they stay in the images and captions, and their boxes, without a phrase,
in DeCLIP's content term), to measure what the dense features learn for shapes no region named.
Seeded and resumable (a rerun continues from the last checkpoint in ``--out``). Only the image tower
and the logit scale are shipped (fp16): the text tower is ``cliplab:shapes-vit``'s, which the bundled
entry names as its base.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from cliplab.models.bundled import BUNDLED
from cliplab.train import TrainConfig, train
from cliplab.train.checkpoint import latest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_tiny import add_output_options, ship_run, weights_path  # noqa: E402

DENSE = BUNDLED["shapes-vit-dense"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objectives", default="clip,grain,declip:4,cloc")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--prompter", default="masked-class", help="cloc's region prompter: block or masked-class")
    p.add_argument("--region-exclude", default="heart,crescent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    add_output_options(p, "shapes-vit-dense")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TrainConfig(
        model="cliplab:shapes-vit", data="synthetic:20000", objectives=args.objectives, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay, seed=args.seed, out=str(args.out), ckpt_every=args.ckpt_every,
        evaluate="scenes,regions,dense" if args.eval_n else "none", eval_every=args.eval_every, eval_n=args.eval_n, log_every=20,
        workers=0, device="cpu", lock_text=True, region_exclude=args.region_exclude, prompter=args.prompter,
    )  # fmt: skip
    result = train(config, resume=latest(args.out) is not None)
    weights = weights_path(args.out, args.ship, DENSE)
    ship_run(args.out, weights, vars(args), result.wall_s, prefixes=("visual.", "logit_scale"))
    if weights.parent != args.out:  # shipped: the bundled config names the run's region prompter, as its manifest does
        prompter = json.loads((args.out / "cliplab_model.json").read_text(encoding="utf-8")).get("prompter")
        config = json.loads(DENSE.config.read_text(encoding="utf-8"))
        config.pop("prompter", None)
        if prompter is not None:
            config["prompter"] = prompter
            if (args.out / prompter).is_file():  # CLOC's learned prompter: its weights go beside the config
                shutil.copyfile(args.out / prompter, DENSE.config.parent / prompter)
        DENSE.config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
