"""The region-trained bundled ViT against the one it was post-trained from (issue #21's targets).

    PYTHONPATH=src python benchmarks/vit_dense.py [--model cliplab:shapes-vit-dense] [--base cliplab:shapes-vit]
                                                 [--scenes 200] [--threads 2] [--json FILE]

On synthetic test scenes of 1-2 objects (seed 2026, never trained on), for both models:

- plain ``naclip`` mIoU over background + the eight shapes (no PAMR, no region relabelling), foreground IoU,
  and the mean IoU of "heart" and "crescent", the shapes no training region named (``--region-exclude``);
- region accuracy: each object's box through ``model.encode_regions`` as the model ships (its region prompter,
  or box pooling of dense features without one), classified by shape; and, for both models, with each readout:
  box pooling (``region_accuracy_pooled``) and the tower's masked class token (``region_accuracy_masked_class``,
  :mod:`cliplab.dense.masked_class`), so the readout's part and the training's part show apart;
- global zero-shot shape accuracy ("a photo of a {shape}" ensemble) on single-object scenes.

Targets: mIoU >= 0.35 and >= 1.5x the base's; heart/crescent IoU >= 1.2x the base's; region accuracy >= 0.90;
zero-shot shape within 2 points of the base's.
"""

from __future__ import annotations

import argparse
import time

from _machine import add_json_option, print_machine, write_json


def figures(spec: str, scenes: int) -> dict[str, float]:
    import cliplab
    from cliplab.evaluate.regions import dense_figures, region_accuracy
    from cliplab.evaluate.scenes import evaluate_scenes

    from cliplab.dense.masked_class import MaskedClassPrompter

    model = cliplab.load_model(spec, device="cpu")
    dense = dense_figures(model, scenes)
    shipped = getattr(model, "region_prompter", None)
    readouts = {}
    for name, prompter in (("pooled", None), ("masked_class", MaskedClassPrompter())):
        model.region_prompter = prompter
        readouts[f"region_accuracy_{name}"] = region_accuracy(model, scenes)
    model.region_prompter = shipped
    return {
        "miou": dense["miou"],
        "foreground_iou": dense["foreground_iou"],
        "held_out_iou": dense["held_out_iou"],
        "region_accuracy": region_accuracy(model, scenes),
        **readouts,
        "zeroshot_shape": evaluate_scenes(model, n_classify=scenes, n_retrieval=0, seed=2026, attributes=("shape",)).attributes["shape"].accuracy,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cliplab:shapes-vit-dense")
    p.add_argument("--base", default="cliplab:shapes-vit")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    add_json_option(p)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    machine = print_machine()
    t0 = time.perf_counter()
    base, model = figures(args.base, args.scenes), figures(args.model, args.scenes)
    print(f"{'figure':<30}{args.base:>24}{args.model:>28}{'ratio / change':>16}")
    for key in base:
        change = model[key] - base[key] if key == "zeroshot_shape" else model[key] / max(base[key], 1e-9)
        print(f"{key:<30}{base[key]:>24.4f}{model[key]:>28.4f}{change:>+16.3f}" if key == "zeroshot_shape" else
              f"{key:<30}{base[key]:>24.4f}{model[key]:>28.4f}{change:>15.2f}x")  # fmt: skip
    targets = {
        "miou >= 0.35 and >= 1.5x": model["miou"] >= 0.35 and model["miou"] >= 1.5 * base["miou"],
        "heart/crescent IoU >= 1.2x": model["held_out_iou"] >= 1.2 * base["held_out_iou"],
        "region accuracy >= 0.90": model["region_accuracy"] >= 0.90,
        "zero-shot shape within 2 points": model["zeroshot_shape"] >= base["zeroshot_shape"] - 0.02,
    }
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    print(f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        write_json(args.json, {"scenes": args.scenes, "base": {"model": args.base, **base}, "model": {"model": args.model, **model},
                               "targets": targets})  # fmt: skip


if __name__ == "__main__":
    main()
