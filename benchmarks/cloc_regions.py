"""CLOC post-training (``--objectives clip,cloc``): region accuracy through the prompter, against box pooling.

    PYTHONPATH=src python benchmarks/cloc_regions.py [--model cliplab:shapes-vit] [--steps 150] [--json FILE]

Post-trains ``--model`` with ``clip,cloc`` (``cliplab.train``; batch ``--batch-size``, lr ``--lr``) and
evaluates the starting model (the baseline) and the trained one on scenes never used in training
(test split, seed 2026):

- region accuracy: ``Model.encode_regions`` on the ground-truth box of every visible object of
  ``--scenes`` scenes, classified zero-shot among the shapes ("a photo of a {shape}."). The start
  pools its naclip dense features over the box; the trained model uses CLOC's prompter (its box
  pooling is reported too);
- phrase grounding (trained model): the prompter's box for each object's phrase, Acc@IoU>=0.5;
- global zero-shot shape accuracy on 500 single-object scenes, with the attribute's own prompts.

Targets (issue #21): region accuracy >= 0.90; zero-shot shape within 2 points of the start.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

from _machine import add_json_option, print_machine, write_json


def region_accuracy(model, scenes) -> float:
    """Share of the visible objects of ``scenes`` whose box embedding is nearest its own shape's prompt."""
    import numpy as np

    from cliplab.data import synthetic
    from cliplab.data.regions import mask_box

    boxes, labels = [], []
    for record in scenes:
        found = [(mask_box(m), o.shape) for o, m in zip(record.spec.objects, record.instance_masks)]
        boxes.append([b for b, _ in found if b is not None])
        labels += [synthetic.SHAPES.index(s) for b, s in found if b is not None]
    regions = model.encode_regions([r.image for r in scenes], boxes)
    text = model.encode_texts([f"a photo of a {s}." for s in synthetic.SHAPES])
    return float(np.mean((regions @ text.T).argmax(1) == np.array(labels)))


def grounding_accuracy(model, scenes) -> tuple[float, float]:
    """(share of phrases whose predicted box has IoU >= 0.5 with the object's box, mean IoU): CLOC's
    grounding head prompted with each visible object's phrase ("a small red star at the top left")."""
    import torch
    from torchvision.ops import box_iou

    from cliplab.data.regions import scene_regions
    from cliplab.dense.prompter import cxcywh_to_xyxy
    from cliplab.models.vision_parts import input_size, vision_parts

    found = [(i, r) for i, record in enumerate(scenes) for r in scene_regions(record)]
    parts = vision_parts(model)
    with torch.no_grad():
        pixels = model.preprocess_batch([r.image for r in scenes])
        x, _ = parts.embed(pixels)
        tokens = parts.last_block(parts.run_blocks(x))
        text = torch.from_numpy(model.encode_texts([r.phrase for _, r in found]))
        predicted = cxcywh_to_xyxy(model.region_prompter.ground(tokens, torch.tensor([i for i, _ in found]), text))
    side = input_size(model)  # the scenes are rendered at the model's input size: boxes need no moving
    iou = box_iou(predicted, torch.tensor([r.box for _, r in found]) / side).diagonal()
    return float((iou >= 0.5).float().mean()), float(iou.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cliplab:shapes-vit")
    p.add_argument("--data", default="synthetic:20000")
    p.add_argument("--objectives", default="clip,cloc")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--scenes", type=int, default=200, help="test scenes for region accuracy")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared machine the CPU seconds are the time one quiet core needs)")
    p.add_argument("--out", default=None, help="the run folder (default: a temporary one)")
    add_json_option(p)
    args = p.parse_args()
    import torch

    from cliplab.data import synthetic
    from cliplab.evaluate.scenes import single_object_scenes, zero_shot_attribute
    from cliplab.models import load_model
    from cliplab.train.config import TrainConfig
    from cliplab.train.trainer import train

    torch.set_num_threads(args.threads)
    machine = print_machine()
    scenes = [synthetic.scene(i, seed=2026, split="test") for i in range(args.scenes)]
    singles = single_object_scenes(500, seed=2026)

    def shape_accuracy(model) -> float:
        return zero_shot_attribute(model, model.encode_images([r.image for r in singles]), singles, "shape").accuracy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = load_model(args.model, device="cpu")
    before = {"region_pooled": region_accuracy(start, scenes), "zeroshot_shape": shape_accuracy(start)}
    out = args.out or tempfile.mkdtemp(prefix="cloc-")
    config = TrainConfig(model=args.model, data=args.data, objectives=args.objectives, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, out=out, evaluate="none", progress=False, ckpt_every=0, workers=0)  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"trained {args.steps} steps ({args.objectives}) in {wall:.0f} s wall, {cpu:.0f} s CPU; loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    trained = load_model(out, device="cpu")
    after = {"region_prompter": region_accuracy(trained, scenes) if getattr(trained, "region_prompter", None) is not None else None,
             "zeroshot_shape": shape_accuracy(trained)}  # fmt: skip
    if after["region_prompter"] is not None:
        after["grounding_acc_iou50"], after["grounding_mean_iou"] = grounding_accuracy(trained, scenes)
        print(f"phrase grounding (prompter's box head): Acc@IoU>=0.5 {after['grounding_acc_iou50']:.3f}, mean IoU {after['grounding_mean_iou']:.3f}")
    trained.region_prompter = None
    after["region_pooled"] = region_accuracy(trained, scenes)
    region = after["region_prompter"] if after["region_prompter"] is not None else after["region_pooled"]
    change = 100 * (after["zeroshot_shape"] - before["zeroshot_shape"])
    print(f"{'':<28} {'start':>7} {'trained':>8}")
    print(f"{'region acc (prompter)':<28} {'':>7} {region:>8.3f}")
    print(f"{'region acc (box-pooled)':<28} {before['region_pooled']:>7.3f} {after['region_pooled']:>8.3f}")
    print(f"{'zero-shot shape':<28} {before['zeroshot_shape']:>7.3f} {after['zeroshot_shape']:>8.3f}")
    print(f"region accuracy {region:.3f} = {region / before['region_pooled']:.2f}x the start's box pooling {before['region_pooled']:.3f} "
          f"(target >= 0.90: {'met' if region >= 0.9 else 'NOT met'}); zero-shot shape {change:+.1f} points "
          f"(target within 2: {'met' if abs(change) <= 2 else 'NOT met'})")  # fmt: skip
    if args.json:
        figures = {"region_accuracy": region, "region_ratio_vs_start_pooled": region / before["region_pooled"], "before": before, "after": after,
                   "shape_change_points": change, "target_region_met": region >= 0.9, "target_shape_met": abs(change) <= 2,
                   "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "objectives": args.objectives,
                   "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "loss_first": result.losses[0], "loss_last": result.losses[-1]}  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
