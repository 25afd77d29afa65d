"""mIoU and foreground IoU of every dense method on synthetic test scenes, plus the learned refinement.

    PYTHONPATH=src python benchmarks/segment_quality.py [--model cliplab:shapes-vit] [--scenes 200] [--json FILE]

Scenes: the test split, 1-2 objects, seed 2026 (never used in training); classes: background + the
eight shapes; mIoU over those nine classes. Prints one row per method with its ratio to ``vanilla``
(the unmodified last block), with ``--pamr`` also each method followed by PAMR, with ``--regions``
each method whose foreground regions are relabelled by classifying a crop around them (OVSeg-style,
the dense segmentation as the proposal source), with both flags also PAMR then regions; then the
learned refinement (trained here, seeded) on top of the best plain method, in the same variants, all
in one process.

``--segmenter-steps N`` trains the open-vocabulary segmenter (cliplab.dense.OVSegmenter, seeded, on
``synthetic:2000`` train scenes labelled with six shapes; heart and crescent unseen) and adds its
rows: mIoU over the nine classes, foreground IoU, seen and unseen mIoU, and the unseen classes' IoU
next to the best training-free variant's (``--segmenter DIR`` scores a saved one instead); the same
segmenter without the frozen classifier in its ensemble (the fine-tuned classifiers alone), and with
``--mask-prompt-steps N`` once more with a mask prompt tuned that long over its fine-tuned tower.

``--large-scenes N`` adds the large-image table: N test scenes rendered at ``--large-size`` pixels
(256; objects at the same relative size, each larger than a window), ``--large-method`` (naclip),
scored as one pass on the image downscaled to the model's input, sliding windows of ``--window``
pixels every ``--stride`` (64/32) at full size, and Trident with the same windows (splice, pool with
the whole-image affinities, split the foreground by the whole-image pass, average in SLIC
superpixels), each with its ratio to the sliding window. ``--large-scenes 0`` skips it.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

from _machine import add_json_option, print_machine, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cliplab:shapes-vit")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--image-size", type=int, default=64, help="rendered scene side in pixels")
    p.add_argument("--size", type=int, default=None, help="inference short side (default: the model's input size)")
    p.add_argument("--naclip-std", type=float, default=5.0)
    p.add_argument("--methods", default=None, help="comma-separated (default: every method of cliplab.dense.attention)")
    p.add_argument("--background", default=None, help="background words, comma-separated, or 'none' (default: generic word + the five textures)")
    p.add_argument("--threshold", type=float, default=None, help="foreground probability below which a pixel is background")
    p.add_argument("--pamr", action="store_true", help="also score every method with PAMR post-processing (default steps and dilations)")
    p.add_argument("--regions", action="store_true", help="also score every method with its foreground regions relabelled from crops")
    p.add_argument("--refine-steps", type=int, default=300, help="0: skip the learned refinement")
    p.add_argument("--teacher-layer", type=int, default=2, help="shapes-tiny ResNet stage the refinement learns from")
    p.add_argument("--segmenter-steps", type=int, default=0, help="train the OVSegmenter this many steps and score it (0: skip)")
    p.add_argument("--segmenter", default=None, help="score this saved OVSegmenter folder instead of training one")
    p.add_argument("--mask-prompt-steps", type=int, default=0, help="also score the segmenter with a mask prompt tuned this long (0: skip)")
    p.add_argument("--large-scenes", type=int, default=100, help="large-image table: scenes (0: skip)")
    p.add_argument("--large-size", type=int, default=256, help="large-image table: rendered scene side in pixels")
    p.add_argument("--large-method", default="naclip")
    p.add_argument("--window", type=int, default=64, help="large-image table: window in pixels (at full size)")
    p.add_argument("--stride", type=int, default=32, help="large-image table: window step in pixels")
    p.add_argument("--threads", type=int, default=2)
    add_json_option(p)
    args = p.parse_args()
    import torch

    from cliplab.dense.attention import METHODS
    from cliplab.dense.datasets import synthetic_masks
    from cliplab.dense.evaluate import run_segmentation
    from cliplab.models import load_model

    torch.set_num_threads(args.threads)
    machine = print_machine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(args.model, pretrained=args.pretrained, device="cpu")
    data = synthetic_masks(args.scenes, args.seed, args.image_size)
    options = {"size": args.size, "naclip_std": args.naclip_std, "threshold": args.threshold}
    if args.background is not None:
        options["background"] = [] if args.background == "none" else args.background.split(",")
    variants = {"": {}}
    if args.pamr:
        variants["+pamr"] = {"refine": "pamr"}
    if args.regions:
        variants["+regions"] = {"regions": True}
    if args.pamr and args.regions:
        variants["+pamr+regions"] = {"refine": "pamr", "regions": True}
    rows, per_class = {}, {}
    print(f"{model.name}: {args.scenes} test scenes ({args.image_size} px, seed {args.seed}), 9 classes")

    def score(name: str, method: str, **extra) -> None:
        t0 = time.perf_counter()
        result = run_segmentation(model, data, method=method, **extra, **options)
        rows[name], per_class[name] = result.metrics, result.per_class_iou
        rows[name]["seconds"] = time.perf_counter() - t0

    for method in args.methods.split(",") if args.methods else METHODS:
        for suffix, extra in variants.items():
            score(f"{method}{suffix}", method, **extra)
    if args.refine_steps:
        from cliplab.dense.refine import train_refiner

        best = max((m for m in rows if m != "vanilla" and "+" not in m), key=lambda m: rows[m]["miou"])
        head = train_refiner(model, load_model("cliplab:shapes-tiny", device="cpu"), steps=args.refine_steps,
                             image_size=args.image_size, teacher_layer=args.teacher_layer)  # fmt: skip
        for suffix, extra in variants.items():
            score(f"{best}+refine{suffix}", best, refiner=head, **extra)
    base = rows.get("vanilla", {}).get("miou")
    for name, r in rows.items():
        ratio = f"{r['miou'] / base:5.2f}x vanilla" if base else ""
        print(f"{name:>22s}  mIoU {r['miou']:.3f}  fg IoU {r['foreground_iou']:.3f}  pixel acc {r['pixel_accuracy']:.3f}  {ratio}")
    figures = {"methods": rows}
    if args.segmenter_steps or args.segmenter:
        free = max((m for m in rows if m != "vanilla" and "+refine" not in m), key=lambda m: rows[m]["miou"])
        figures["trained"] = trained_rows(model, args, data, free, rows[free]["miou"], per_class[free])
    if args.large_scenes:
        figures["large_images"] = large_image_table(model, args, options)
    if args.json:
        write_json(args.json, figures, machine)
    print(json.dumps({k: {m: round(v, 4) for m, v in r.items()} for k, r in rows.items()}))


def trained_rows(model, args, data, free: str, free_miou: float, free_iou: dict) -> dict[str, dict[str, float]]:
    """The trained segmenter's figures (trained here or loaded), next to the best training-free variant ``free``."""
    from cliplab.dense.ovseg import SEEN_SHAPES, OVSegmenter

    t0 = time.perf_counter()
    if args.segmenter:
        segmenter, train_seconds = OVSegmenter.load(args.segmenter, model=model), float("nan")
    else:
        segmenter = OVSegmenter(model).fit("synthetic:2000", classes=SEEN_SHAPES, steps=args.segmenter_steps)
        train_seconds = time.perf_counter() - t0
    print(f"trained segmenter ({segmenter.steps_done_} steps, {train_seconds:.0f} s):")
    rows = {"trained (learned proposals)": trained_row(model, data, segmenter, train_seconds, free_iou)}
    frozen_weights, segmenter.frozen_weights = segmenter.frozen_weights, (0.0, 0.0)
    rows["trained, fine-tuned classifiers only"] = trained_row(model, data, segmenter, train_seconds, free_iou)
    segmenter.frozen_weights = frozen_weights
    if args.mask_prompt_steps:
        from cliplab.dense.ovseg import training_scenes
        from cliplab.dense.regions import tune_mask_prompt

        scenes = training_scenes(model, "synthetic:2000", segmenter.classes_)  # what fit(mask_prompt_steps=N) tunes on
        segmenter.mask_prompt = tune_mask_prompt(segmenter.tuned, scenes.crops, scenes.crop_masks, scenes.crop_labels,
                                                 segmenter.text(segmenter.classes_), steps=args.mask_prompt_steps)  # fmt: skip
        rows[f"trained + mask prompt ({args.mask_prompt_steps} steps)"] = trained_row(model, data, segmenter, train_seconds, free_iou)
        segmenter.mask_prompt = None
    unseen = [c for c in data.classes[1:] if c not in segmenter.classes_]
    best = float(sum(free_iou[c] for c in unseen) / len(unseen))
    print(f"  best training-free {free}: mIoU {free_miou:.3f}, unseen {best:.3f}")
    return {**rows, f"{free} (best training-free)": {"miou": free_miou, "unseen_miou": best}}


def trained_row(model, data, segmenter, train_seconds: float, free_iou: dict) -> dict[str, float]:
    """One trained segmenter's figures as it stands, its unseen mIoU against the training-free ``free_iou``."""
    from cliplab.dense.evaluate import run_segmentation

    t0 = time.perf_counter()
    result = run_segmentation(model, data, trained=segmenter, seen=segmenter.classes_)
    unseen = [c for c in data.classes[1:] if c not in segmenter.classes_]
    row = {**result.metrics, "train_seconds": train_seconds, "seconds": time.perf_counter() - t0}
    row.update({f"iou_{c}": result.per_class_iou[c] for c in unseen})
    row["x_free_unseen"] = row["unseen_miou"] / float(sum(free_iou[c] for c in unseen) / len(unseen))
    print(f"  frozen weights {segmenter.frozen_weights}, mask prompt {segmenter.mask_prompt is not None}: mIoU {row['miou']:.3f}  "
          f"fg IoU {row['foreground_iou']:.3f}  seen {row['seen_miou']:.3f}  unseen {row['unseen_miou']:.3f} ({row['x_free_unseen']:.2f}x)")
    return row


def large_image_table(model, args, options: dict) -> dict[str, dict[str, float]]:
    """One pass downscaled, sliding windows and Trident on large scenes; printed, and returned as rows."""
    from cliplab.dense.datasets import synthetic_masks
    from cliplab.dense.evaluate import run_segmentation
    from cliplab.models.vision_parts import input_size

    data = synthetic_masks(args.large_scenes, args.seed, args.large_size)
    full = {**options, "size": args.large_size}
    window = f"window {args.window}/{args.stride}"
    runs = {
        f"one pass at {input_size(model)} px": {**options, "size": input_size(model)},
        f"sliding {window}": {**full, "window": args.window, "stride": args.stride},
        f"trident {window}": {**full, "window": args.window, "stride": args.stride, "trident": True},
    }
    rows = {}
    print(f"large images: {args.large_scenes} test scenes ({args.large_size} px, seed {args.seed}), {args.large_method}")
    for name, extra in runs.items():
        t0 = time.perf_counter()
        rows[name] = run_segmentation(model, data, method=args.large_method, **extra).metrics
        rows[name]["seconds"] = time.perf_counter() - t0
    base = rows[f"sliding {window}"]["miou"]
    for name, r in rows.items():
        r["x_sliding"] = r["miou"] / base
        print(f"{name:>28s}  mIoU {r['miou']:.3f}  fg IoU {r['foreground_iou']:.3f}  {r['x_sliding']:5.2f}x sliding")
    return rows


if __name__ == "__main__":
    main()
