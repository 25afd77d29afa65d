"""Train the bundled model ``cliplab:shapes-tiny`` from scratch on synthetic scenes.

    python scripts/train_tiny.py                 # full recipe, resumes from runs/shapes-tiny/
    python scripts/train_tiny.py --steps 20      # smoke run

Seeded and resumable: batch b is drawn from (seed, b), checkpoints are written atomically every
``--ckpt-every`` steps and a rerun continues from the last one. At the end the weights are saved
as fp16 safetensors next to the model config in ``src/cliplab/models/bundled/``, and the training
log (loss, per-attribute zero-shot accuracy, retrieval) is written as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from cliplab.models.bundled import BUNDLED
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.train.objectives import multi_positive_clip_loss
from cliplab.train.scene_batches import TwinSceneBatches

REPO = Path(__file__).resolve().parents[1]
TINY = BUNDLED["shapes-tiny"]


def evaluate(model: OpenClipModel, n: int) -> dict:
    """Per-attribute zero-shot accuracy and caption retrieval of the model being trained."""
    from cliplab.evaluate.scenes import evaluate_scenes

    module = model.torch_module
    module.eval()
    model.logit_scale = float(module.logit_scale.detach().exp())
    figures = evaluate_scenes(model, n_classify=n, n_retrieval=n, seed=777).figures()
    module.train()
    return {"zeroshot_accuracy": figures["zeroshot_accuracy"], "retrieval": figures["retrieval"]}


def lr_at(step: int, total: int, base_lr: float, warmup: int) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
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
    p.add_argument("--run-dir", type=Path, default=REPO / "runs" / "shapes-tiny")
    p.add_argument("--out", type=Path, default=TINY.weights)
    args = p.parse_args(argv)

    cfg = json.loads(TINY.config.read_text())
    torch.manual_seed(args.seed)
    model = OpenClipModel.from_config("cliplab:shapes-tiny", cfg["model_cfg"], cfg["preprocess_cfg"], None, device="cpu")
    module = model.torch_module.to(memory_format=torch.channels_last)
    decay = [p_ for n, p_ in module.named_parameters() if p_.ndim >= 2 and "embedding" not in n]
    no_decay = [p_ for n, p_ in module.named_parameters() if not (p_.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    args.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = args.run_dir / "checkpoint.pt", args.run_dir / "log.json"
    start, log, elapsed = 0, {"args": {k: str(v) for k, v in vars(args).items()}, "steps": [], "evals": []}, 0.0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, elapsed = int(state["step"]), float(state["elapsed"])
        log = json.loads(log_path.read_text()) if log_path.exists() else log
        print(f"resuming from step {start}", flush=True)

    torch.set_num_threads(2)
    batches = TwinSceneBatches(model.preprocess, model.tokenize, args.batch_size, seed=args.seed, start=start)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=1, prefetch_factor=4, persistent_workers=False)
    module.train()
    t0, step = time.time(), start
    for step, (pixels, tokens, ids) in enumerate(loader, start=start):
        if step >= args.steps:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        img, txt, scale = module(pixels.contiguous(memory_format=torch.channels_last), tokens)
        loss = multi_positive_clip_loss(img, txt, scale, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            module.logit_scale.clamp_(0, math.log(100))
        done = step + 1
        if done % 20 == 0:
            rate = (done - start) / (time.time() - t0)
            log["steps"].append({"step": done, "loss": round(loss.item(), 4), "logit_scale": round(scale.item(), 2)})
            print(f"step {done}/{args.steps} loss {loss.item():.3f} scale {scale.item():.1f} {rate:.2f} it/s", flush=True)
        if done % args.eval_every == 0 or done == args.steps:
            log["evals"].append({"step": done, **evaluate(model, args.eval_n)})
            print(json.dumps(log["evals"][-1]), flush=True)
        if done % args.ckpt_every == 0 or done == args.steps:
            atomic_torch_save({"model": module.state_dict(), "optimizer": opt.state_dict(), "step": done,
                               "elapsed": elapsed + time.time() - t0}, ckpt_path)  # fmt: skip
            log_path.write_text(json.dumps(log, indent=1))

    log["wall_time_s"] = round(elapsed + time.time() - t0, 1)
    log_path.write_text(json.dumps(log, indent=1))
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}
    tmp = args.out.with_suffix(".tmp")
    save_file(weights, str(tmp), metadata={"format": "pt", "steps": str(args.steps), "seed": str(args.seed)})
    os.replace(tmp, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {log['wall_time_s']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
