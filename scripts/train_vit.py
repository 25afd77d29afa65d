"""Train the bundled ViT ``cliplab:shapes-vit`` on synthetic scenes, guided by ``cliplab:shapes-tiny``.

    python scripts/train_vit.py                 # full recipe, resumes from runs/shapes-vit/
    python scripts/train_vit.py --steps 20 --region-steps 5 --out /tmp/vit   # smoke run
    python scripts/train_vit.py --ship          # full recipe, then replace the shipped weights

A ViT trained from scratch learns colour and position first and shape late (see the model card).
Three things aim to shorten that on 2 CPU cores:

- the text tower (and the logit scale) is copied from ``cliplab:shapes-tiny`` and frozen, so the
  image tower aligns to text embeddings that already separate shapes ("locked text", the reverse
  of LiT, Zhai et al. 2022);
- the ``distill`` objective pulls each image embedding towards the frozen shapes-tiny image
  embedding of the same scene (cosine distillation), a dense signal next to the contrastive one;
- the batches are the shape-weighted twin batches of ``cliplab.train.scene_batches``.

Stage 1 is a thin call of the trainer (``cliplab.train``), like ``train_tiny.py``: seeded and
resumable (batch b is drawn from (seed, b); a rerun continues from the last checkpoint in
``--out``). Stage 2 (``--region-steps``, about 5 minutes; rerun from stage 1's weights if cut
off) is region self-distillation (``cliplab.dense.self_distill``, CLIPSelf-style): the patch
features of the ``naclip`` last block, averaged over random boxes, learn the model's own embedding
of each box's crop, while the image embedding stays put. At the end the weights are saved as fp16
safetensors next to the model config and the training log as JSON (with stage 2's losses and a
zero-shot evaluation after it), in the run folder (``model-fp16.safetensors``), or with ``--ship``
over the shipped weights in ``src/cliplab/models/bundled/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from cliplab.dense.refine import normalised, scene_pixels
from cliplab.dense.self_distill import distill_regions
from cliplab.files import atomic_target, write_json
from cliplab.models import load_model
from cliplab.models.bundled import BUNDLED
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.train import TrainConfig, train
from cliplab.train.checkpoint import latest
from cliplab.train.eval_hooks import evaluate
from cliplab.train.scene_batches import TwinSceneBatches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_tiny import add_output_options, ship_run, weights_path  # noqa: E402

VIT = BUNDLED["shapes-vit"]


def build_student(seed: int) -> OpenClipModel:
    """The ViT CLIP with shapes-tiny's text tower and logit scale copied in and frozen."""
    cfg = json.loads(VIT.config.read_text())
    torch.manual_seed(seed)
    student = OpenClipModel.from_config("cliplab:shapes-vit", cfg["model_cfg"], cfg["preprocess_cfg"], None, device="cpu")
    teacher_state = load_model("cliplab:shapes-tiny", device="cpu").torch_module.state_dict()
    text_state = {k: v for k, v in teacher_state.items() if not k.startswith("visual.")}
    missing, unexpected = student.torch_module.load_state_dict(text_state, strict=False)
    if unexpected or not all(k.startswith("visual.") for k in missing):
        raise RuntimeError(f"shapes-tiny's text tower does not fit shapes-vit: missing {missing}, unexpected {unexpected}")
    for name, param in student.torch_module.named_parameters():
        param.requires_grad_(name.startswith("visual."))
    return student


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--distill", type=float, default=1.0, help="weight of the cosine distillation term")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-n", type=int, default=300)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--region-steps", type=int, default=300, help="stage 2: region self-distillation steps (0: skip)")
    p.add_argument("--region-lr", type=float, default=1e-4)
    p.add_argument("--region-batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    add_output_options(p, "shapes-vit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    torch.set_num_threads(args.threads)
    model = build_student(args.seed)
    config = TrainConfig(
        model="cliplab:shapes-vit", data="synthetic twin scenes", objectives=f"clip,distill:{args.distill}", steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay, grad_clip=None, seed=args.seed,
        out=str(args.out), ckpt_every=args.ckpt_every, eval_every=args.eval_every, eval_n=args.eval_n, log_every=20, workers=1,
        device="cpu", teacher="cliplab:shapes-tiny",
    )  # fmt: skip
    twins = lambda start: TwinSceneBatches(model.preprocess, model.tokenize, args.batch_size, seed=args.seed, start=start, keep_images=True)
    result = train(config, model=model, resume=latest(args.out) is not None, batches=twins)

    weights = weights_path(args.out, args.ship, VIT)
    ship_run(args.out, weights, vars(args), result.wall_s)
    if args.region_steps:
        distill_stage(args, weights)


def distill_stage(args: argparse.Namespace, weights_file: Path) -> None:
    """Stage 2 on stage 1's fp16 weights (``weights_file``): region self-distillation, then the weights again there."""
    model = load_model("cliplab:shapes-vit", pretrained=str(weights_file), device="cpu")
    images = lambda step: normalised(model, scene_pixels(args.region_batch_size, 10_000 + step, 64))
    report = lambda step, region, whole: step % 50 == 0 and print(f"region step {step}: region {region:.4f} whole {whole:.4f}", file=sys.stderr)
    t0 = time.perf_counter()
    log = distill_regions(model, images, steps=args.region_steps, batch_size=args.region_batch_size, lr=args.region_lr, seed=args.seed,
                          progress=report)  # fmt: skip
    weights = {k: v.to(torch.float16).contiguous() for k, v in model.torch_module.state_dict().items()}
    with atomic_target(weights_file) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt", "steps": str(args.steps), "region_steps": str(args.region_steps),
                                               "seed": str(args.seed)})  # fmt: skip
    run_log = json.loads((args.out / "log.json").read_text())
    run_log["region_distillation"] = {
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "steps": [{"step": i, "region": round(r, 4), "whole": round(w, 4)} for i, (r, w) in enumerate(zip(log.region, log.whole)) if i % 20 == 0],
        "eval": evaluate(model, args.eval_n),
    }
    write_json(run_log, args.out / "log.json")

if __name__ == "__main__":
    main()
