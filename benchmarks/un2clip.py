"""un²CLIP from a starting model: MMVP-style pair accuracy and zero-shot accuracy, start vs tuned.

    PYTHONPATH=src python benchmarks/un2clip.py [--model cliplab:shapes-vit] [--data synthetic:16000] [--json FILE]

Runs ``cliplab un2clip``'s library path with its defaults (a decoder trained on the frozen model's
embeddings of ``--data``, then the image tower tuned through it; ``cliplab.train.un2clip``), timed in
wall and CPU seconds, then evaluates the starting model (the baseline) and the tuned one on the same
scenes, never used in training (test split):

- MMVP-style pairs (``cliplab eval mmvp``, seed ``--pairs-seed``): per kind of twin (colours exchanged;
  one colour, shape, size or position changed), the share of pairs whose two images are both nearer
  their own full caption, and the twins' separation;
- zero-shot accuracy per attribute on single-object scenes (seed 2026, ``--eval-n`` scenes), with the
  unchanged text tower: this shows whether text alignment was kept.

Targets (issue #25): colour-exchanged pair accuracy >= 5 points above the start, zero-shot shape within 2 points.
"""

from __future__ import annotations

import argparse
import time
import warnings

from _machine import add_json_option, print_machine, write_json

ATTRIBUTES = ("shape", "color", "size", "position", "background")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cliplab:shapes-vit")
    p.add_argument("--data", default="synthetic:16000")
    p.add_argument("--decoder", choices=("diffusion", "regression"), default=None)
    p.add_argument("--decoder-size", type=int, default=None)
    p.add_argument("--decoder-width", type=int, default=None)
    p.add_argument("--decoder-batch-size", type=int, default=None)
    p.add_argument("--decoder-lr", type=float, default=None)
    p.add_argument("--t-min", type=float, default=None)
    p.add_argument("--t-max", type=float, default=None)
    p.add_argument("--draws", type=int, default=None)
    p.add_argument("--decoder-steps", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--anchor", type=float, default=None)
    p.add_argument("--noise", type=float, default=None)
    p.add_argument("--finetune-noise", type=float, default=None)
    p.add_argument("--merge", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--loss-size", type=int, default=None)
    p.add_argument("--pairs", type=int, default=1000, help="twin pairs per kind (the same pairs for the start and the tuned model)")
    p.add_argument("--pairs-seed", type=int, default=2028)
    p.add_argument("--eval-n", type=int, default=500, help="single-object scenes for zero-shot accuracy")
    p.add_argument("--check-seed", type=int, default=2029, help="second test set: --check-pairs colour-exchanged pairs and --check-n single-object scenes from this seed")
    p.add_argument("--check-pairs", type=int, default=2000)
    p.add_argument("--check-n", type=int, default=1500)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared machine the CPU seconds are the time one quiet core needs)")
    p.add_argument("--out", default=None, help="also write the tuned model folder here")
    add_json_option(p)
    args = p.parse_args()
    import copy

    import torch

    from cliplab.evaluate.scenes import single_object_scenes, zero_shot_attribute
    from cliplab.evaluate.tasks.mmvp import run_mmvp
    from cliplab.models import load_model
    from cliplab.train.un2clip import (
        Un2ClipConfig,
        run_un2clip,
        save_un2clip,
        training_images,
    )

    torch.set_num_threads(args.threads)
    machine = print_machine()
    settings = ("decoder", "decoder_size", "decoder_width", "decoder_batch_size", "decoder_lr", "t_min", "t_max", "draws",
                "decoder_steps", "steps", "lr", "anchor", "noise", "finetune_noise", "merge", "batch_size", "loss_size")
    given = {k: getattr(args, k) for k in settings if getattr(args, k) is not None}
    config = Un2ClipConfig(**given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = load_model(args.model, device="cpu")
    singles = single_object_scenes(args.eval_n, seed=2026)

    def evaluate(model) -> tuple[dict, dict]:
        emb = model.encode_images([r.image for r in singles])
        zeroshot = {a: zero_shot_attribute(model, emb, singles, a).accuracy for a in ATTRIBUTES}
        return zeroshot, {(r.kind, r.captions): r for r in run_mmvp(model, n=args.pairs, seed=args.pairs_seed).rows}

    def check(model) -> tuple[float, float]:
        """Colour-exchanged pair accuracy and zero-shot shape on the second test set."""
        rows = run_mmvp(model, n=args.check_pairs, seed=args.check_seed, kinds=("color_swap",)).rows
        scenes = single_object_scenes(args.check_n, seed=args.check_seed)
        shape = zero_shot_attribute(model, model.encode_images([r.image for r in scenes]), scenes, "shape").accuracy
        return next(r.pair_accuracy for r in rows if r.captions == "full"), shape

    t0 = time.perf_counter()
    zs_start, mmvp_start = evaluate(start)
    check_start = check(start)
    print(f"start ({args.model}) evaluated in {time.perf_counter() - t0:.0f} s", flush=True)
    images = training_images(args.data)
    tuned = copy.deepcopy(start)
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_un2clip(tuned, images, config, on_log=lambda r: print(r, flush=True))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"un2clip: {len(images)} images, {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    if args.out:
        save_un2clip(result, args.out, args.model)
    zs_tuned, mmvp_tuned = evaluate(tuned)
    check_tuned = check(tuned)
    check_gain, check_shape = (100 * (b - a) for a, b in zip(check_start, check_tuned))

    pairs = {}
    for key, row in mmvp_start.items():
        new = mmvp_tuned[key]
        name = key[0] if key[1] == "full" else f"{key[0]} ({key[1]} captions)"
        pairs[name] = {"n": row.n, "start": row.pair_accuracy, "un2clip": new.pair_accuracy, "gain_points": 100 * (new.pair_accuracy - row.pair_accuracy),
                       "separation_start": row.separation, "separation_un2clip": new.separation,
                       "twin_cosine_start": row.twin_cosine, "twin_cosine_un2clip": new.twin_cosine}  # fmt: skip
    zeroshot = {a: {"start": zs_start[a], "un2clip": zs_tuned[a], "change_points": 100 * (zs_tuned[a] - zs_start[a])} for a in ATTRIBUTES}
    print(f"{'MMVP pairs':<34} {'n':>4} {'start':>7} {'un2clip':>8} {'gain':>7}")
    for name, r in pairs.items():
        print(f"{name:<34} {r['n']:>4} {r['start']:>7.3f} {r['un2clip']:>8.3f} {r['gain_points']:>+6.1f}")
    print(f"{'zero-shot':<34} {'':>4} {'start':>7} {'un2clip':>8} {'change':>7}")
    for a, r in zeroshot.items():
        print(f"{a:<34} {'':>4} {r['start']:>7.3f} {r['un2clip']:>8.3f} {r['change_points']:>+6.1f}")
    gain, shape = pairs["color_swap"]["gain_points"], zeroshot["shape"]["change_points"]
    print(f"colour-exchanged pair accuracy {pairs['color_swap']['un2clip']:.3f} vs start {pairs['color_swap']['start']:.3f}: "
          f"{gain:+.1f} points (target >= +5: {'met' if gain >= 5 else 'NOT met'}); zero-shot shape {shape:+.1f} points "
          f"(target within 2: {'met' if abs(shape) <= 2 else 'NOT met'})")  # fmt: skip
    print(f"second test set (seed {args.check_seed}: {args.check_pairs} pairs, {args.check_n} scenes): colour-exchanged pair accuracy "
          f"{check_tuned[0]:.3f} vs start {check_start[0]:.3f}: {check_gain:+.1f} points; zero-shot shape {check_shape:+.1f} points")  # fmt: skip
    if args.json:
        s = result.summary()
        figures = {
            "color_swap_gain_points": gain, "shape_change_points": shape,
            "check_color_swap_gain_points": round(check_gain, 2), "check_shape_change_points": round(check_shape, 2),
            "target_color_swap_met": gain >= 5, "target_shape_met": abs(shape) <= 2,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "n_images": len(images), "pairs": args.pairs,
            "decoder_loss_first": s["decoder"]["loss"]["first"], "decoder_loss_last": s["decoder"]["loss"]["last"],
            "mmvp_pair_accuracy": pairs, "zeroshot_accuracy": zeroshot, "config": s["config"], "stage_times": s["times"],
        }  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
