"""Train the bundled model ``cliplab:shapes-tiny`` from scratch on synthetic scenes.

    python scripts/train_tiny.py                 # full recipe, resumes from runs/shapes-tiny/
    python scripts/train_tiny.py --steps 20 --out /tmp/tiny   # smoke run
    python scripts/train_tiny.py --ship          # full recipe, then replace the shipped weights

A thin call of the trainer (``cliplab.train``) on twin-scene batches
(``cliplab.train.scene_batches``) with CLIP's loss (repeated captions count as positives). Seeded
and resumable: batch b is drawn from (seed, b), checkpoints are written every ``--ckpt-every``
steps and a rerun continues from the last one. At the end the weights are saved as fp16
safetensors in the run folder (``--out``, as ``model-fp16.safetensors``), or with ``--ship`` over
the shipped ones next to the model config in ``src/cliplab/models/bundled/``; the training log
(loss, per-attribute zero-shot accuracy, retrieval) is written as JSON in the run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cliplab.files import atomic_target, write_json
from cliplab.models.bundled import BUNDLED, BundledModel
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.train import TrainConfig, train
from cliplab.train.checkpoint import latest
from cliplab.train.scene_batches import TwinSceneBatches

REPO = Path(__file__).resolve().parents[1]
TINY = BUNDLED["shapes-tiny"]


def weights_path(out: Path, ship: bool, bundled: BundledModel) -> Path:
    """Where a run saves its fp16 weights: the shipped file of ``bundled`` only when asked (``--ship``),
    else inside the run folder ``out``; shared with ``train_vit.py``."""
    return bundled.weights if ship else out / "model-fp16.safetensors"


def add_output_options(parser: argparse.ArgumentParser, run: str) -> None:
    """``--out`` (the run folder, default ``runs/<run>``) and ``--ship``; shared with ``train_vit.py``."""
    parser.add_argument("--out", type=Path, default=REPO / "runs" / run, help="run folder: checkpoints, log and fp16 weights")
    parser.add_argument("--ship", action="store_true",
                        help="save the fp16 weights over the shipped ones in src/cliplab/models/bundled/, not in the run folder")


def ship_run(run_dir: Path, weights_file: Path, args: dict, wall_s: float, prefixes: tuple[str, ...] = ("",)) -> None:
    """Save a finished run's weights as fp16 safetensors at ``weights_file`` and its log as ``run_dir/log.json``
    (loss terms and logit scale every 20 steps, the evaluations, the wall time summed over the calls
    that trained or resumed the run); shared with ``train_vit.py``. ``prefixes``: keep only the tensors
    whose names start with one of them (a model shipping one tower over a bundled base)."""
    state = load_file(str(run_dir / "model.safetensors"))
    weights = {k: v.to(torch.float16).contiguous() for k, v in state.items() if k.startswith(prefixes)}
    with atomic_target(weights_file) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt", "steps": str(args["steps"]), "seed": str(args["seed"])})
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    earlier = json.loads((run_dir / "log.json").read_text()).get("wall_time_s", 0.0) if (run_dir / "log.json").is_file() else 0.0
    log = {"args": {k: str(v) for k, v in args.items()}, "wall_time_s": round(earlier + wall_s, 1),
           "steps": [{"step": r["step"], **{k: round(v, 4) for k, v in r.items() if k == "loss" or k.startswith("loss/")},
                      "logit_scale": round(r["logit_scale"], 2)} for r in lines if "loss" in r],
           "evals": [{"step": r["step"], **r["eval"]} for r in lines if "eval" in r]}  # fmt: skip
    write_json(log, run_dir / "log.json")
    print(f"saved {weights_file} ({weights_file.stat().st_size / 1e6:.1f} MB) after {log['wall_time_s']} s", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=300)
    p.add_argument("--eval-n", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=100)
    add_output_options(p, "shapes-tiny")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    cfg = json.loads(TINY.config.read_text())
    torch.manual_seed(args.seed)
    model = OpenClipModel.from_config("cliplab:shapes-tiny", cfg["model_cfg"], cfg["preprocess_cfg"], None, device="cpu")
    config = TrainConfig(
        model="cliplab:shapes-tiny", data="synthetic twin scenes", objectives="clip", steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay, grad_clip=None, seed=args.seed, out=str(args.out),
        ckpt_every=args.ckpt_every, eval_every=args.eval_every, eval_n=args.eval_n, log_every=20, workers=1, device="cpu",
    )  # fmt: skip
    twins = lambda start: TwinSceneBatches(model.preprocess, model.tokenize, args.batch_size, seed=args.seed, start=start)
    torch.set_num_threads(2)
    result = train(config, model=model, resume=latest(args.out) is not None, batches=twins)

    ship_run(args.out, weights_path(args.out, args.ship, TINY), vars(args), result.wall_s)

if __name__ == "__main__":
    main()
