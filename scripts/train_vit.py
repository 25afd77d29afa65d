"""Train the bundled ViT ``cliplab:shapes-vit`` on synthetic scenes, guided by ``cliplab:shapes-tiny``.

    python scripts/train_vit.py                 # full recipe, resumes from runs/shapes-vit/
    python scripts/train_vit.py --steps 20      # smoke run

A plain ViT trained from scratch learns colour and position first and shape late (see the
shapes-tiny model card), and the 2 shared CPU cores this is built on allow a few thousand small
steps. Three things make it learn shape in that budget:

- the text tower (and the logit scale) is copied from ``cliplab:shapes-tiny`` and frozen, so the
  image tower aligns to text embeddings that already separate shapes ("locked text", the reverse
  of LiT, Zhai et al. 2022);
- the image embedding is pulled towards the frozen shapes-tiny image embedding of the same scene
  (cosine distillation), a dense signal next to the contrastive one;
- the batches are the shape-weighted twin batches of ``cliplab.train.scene_batches``; the data
  worker renders them and runs both frozen towers, in parallel with the student's step.

Seeded and resumable like ``train_tiny.py``: batch b is drawn from (seed, b), checkpoints are
written atomically and a rerun continues from the last one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from cliplab.files import atomic_target, write_json
from cliplab.models import load_model
from cliplab.models.bundled import BUNDLED
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.train.objectives import multi_positive_clip_loss
from cliplab.train.scene_batches import TwinSceneBatches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_tiny import evaluate, lr_at

REPO = Path(__file__).resolve().parents[1]
VIT = BUNDLED["shapes-vit"]


def build_student(seed: int) -> tuple[OpenClipModel, list[torch.nn.Parameter]]:
    """The ViT CLIP with shapes-tiny's text tower copied in and frozen; returns the trainable parameters."""
    cfg = json.loads(VIT.config.read_text())
    torch.manual_seed(seed)
    student = OpenClipModel.from_config("cliplab:shapes-vit", cfg["model_cfg"], cfg["preprocess_cfg"], None, device="cpu")
    teacher_state = load_model("cliplab:shapes-tiny", device="cpu").torch_module.state_dict()
    text_state = {k: v for k, v in teacher_state.items() if not k.startswith("visual.")}
    missing, unexpected = student.torch_module.load_state_dict(text_state, strict=False)
    assert not unexpected and all(k.startswith("visual.") for k in missing), (missing, unexpected)
    trainable = []
    for name, param in student.torch_module.named_parameters():
        param.requires_grad_(name.startswith("visual."))
        if param.requires_grad:
            trainable.append(param)
    return student, trainable


class DistillationBatches(torch.utils.data.IterableDataset):
    """Twin batches with their targets: ``(pixels, teacher image embeddings, text embeddings, caption ids)``.

    Runs in the data-loader worker, so rendering and the two frozen towers (the teacher's image
    tower, the student's copied text tower) overlap with the student's training step.
    """

    def __init__(self, batches: TwinSceneBatches, teacher: torch.nn.Module, text_tower: torch.nn.Module) -> None:
        super().__init__()
        self.batches, self.teacher, self.text_tower = batches, teacher, text_tower

    def __iter__(self):
        torch.set_num_threads(1)
        with torch.no_grad():
            for pixels, tokens, ids in self.batches:
                target = F.normalize(self.teacher.encode_image(pixels), dim=-1)
                yield pixels, target, F.normalize(self.text_tower.encode_text(tokens), dim=-1), ids


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=360)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--distill", type=float, default=1.0, help="weight of the cosine distillation term")
    p.add_argument("--stop-at", type=int, default=None, help="end (and save) at this step, keeping the --steps schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=180)
    p.add_argument("--eval-n", type=int, default=300)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--run-dir", type=Path, default=REPO / "runs" / "shapes-vit")
    p.add_argument("--out", type=Path, default=VIT.weights)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, trainable = build_student(args.seed)
    module = model.torch_module
    args.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = args.run_dir / "checkpoint.pt", args.run_dir / "log.json"
    decay = [p_ for p_ in trainable if p_.ndim >= 2]
    no_decay = [p_ for p_ in trainable if p_.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)  # fmt: skip

    start, elapsed = 0, 0.0
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "steps": [], "evals": []}
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, elapsed = int(state["step"]), float(state["elapsed"])
        log = json.loads(log_path.read_text()) if log_path.exists() else log
        print(f"resuming from step {start}", flush=True)

    teacher = load_model("cliplab:shapes-tiny", device="cpu").torch_module.eval()
    batches = TwinSceneBatches(model.preprocess, model.tokenize, args.batch_size, seed=args.seed, start=start)
    loader = torch.utils.data.DataLoader(DistillationBatches(batches, teacher, module), batch_size=None, num_workers=1, prefetch_factor=2)
    scale = module.logit_scale.exp().detach()
    module.train()
    t0 = time.time()
    for step, (pixels, target, text, ids) in enumerate(loader, start=start):
        if step >= min(args.steps, args.stop_at or args.steps):
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        img = module.encode_image(pixels)
        contrastive = multi_positive_clip_loss(img, text, scale, ids)
        distill = (1 - (F.normalize(img, dim=-1) * target).sum(-1)).mean()
        loss = contrastive + args.distill * distill
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        if done % 10 == 0:
            rate = (done - start) / (time.time() - t0)
            log["steps"].append({"step": done, "loss": round(loss.item(), 4), "contrastive": round(contrastive.item(), 4),
                                 "distill": round(distill.item(), 4)})  # fmt: skip
            print(f"step {done}/{args.steps} loss {loss.item():.3f} (clip {contrastive.item():.3f} "
                  f"distill {distill.item():.3f}) {rate:.3f} it/s", flush=True)  # fmt: skip
        last = done == min(args.steps, args.stop_at or args.steps)
        if done % args.eval_every == 0 or last:
            log["evals"].append({"step": done, **evaluate(model, args.eval_n)})
            print(json.dumps(log["evals"][-1]), flush=True)
        if done % args.ckpt_every == 0 or last:
            state = {"model": module.state_dict(), "optimizer": opt.state_dict(), "step": done, "elapsed": elapsed + time.time() - t0}
            with atomic_target(ckpt_path) as tmp:
                torch.save(state, tmp)
            write_json(log, log_path)

    log["wall_time_s"] = round(elapsed + time.time() - t0, 1)
    write_json(log, log_path)
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}
    with atomic_target(args.out) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt", "steps": str(min(args.steps, args.stop_at or args.steps)), "seed": str(args.seed)})
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {log['wall_time_s']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
