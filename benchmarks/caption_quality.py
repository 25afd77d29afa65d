"""The bundled captioner's quality on unseen synthetic scenes, and its decoder's speed at fp32, bf16 and int8.

    PYTHONPATH=src python benchmarks/caption_quality.py [--captioner DIR] [--n 1000] [--json FILE]

Scenes: ``--n`` scenes of the test split (1-2 objects, seed ``--seed``; training used the train split,
seed 0). Each has two references, the full caption and a paraphrase (``synthetic.paraphrase`` drawn
from ``(seed, 1, i)``); BLEU-4 and CIDEr-D are pycocoevalcap's scorers (``cliplab.caption.metrics``).
Printed against two named baselines scored the same way: the true full caption (the ceiling) and the
full caption with every object's size and position wrong (the next size and position in the lists).
Also: the share of single-object scenes whose caption names the right shape (and no other), the share
of captions equal to a full caption of the scene (object order free), and, on ``--speed-n`` captions,
captions per second of the decoder alone (features precomputed; greedy) at each decoder precision on
the CPU, with the share of captions equal to fp32's.

Targets (issue #24): BLEU-4 >= 0.75, CIDEr-D >= 4.5, right shape >= 0.95 of single-object scenes.
"""

from __future__ import annotations

import argparse
import itertools
import time

from _machine import add_json_option, print_machine, write_json


def references(records, seed: int) -> list[list[str]]:
    """Each scene's two references: its full caption and a paraphrase drawn from ``(seed, 1, i)``."""
    import numpy as np

    from cliplab.data import synthetic

    return [[r.caption, synthetic.paraphrase(r.spec, np.random.default_rng([seed, 1, i]))] for i, r in enumerate(records)]


def right_shape_rate(captions: list[str], records) -> tuple[float, int]:
    """(the share of single-object scenes whose caption names their shape and no other, how many such scenes)."""
    import numpy as np

    from cliplab.caption.metrics import tokenize
    from cliplab.data.synthetic import SHAPES

    singles = [(c, r) for c, r in zip(captions, records) if len(r.objects) == 1]
    if not singles:
        return float("nan"), 0
    return float(np.mean([set(tokenize(c).split()) & set(SHAPES) == {r.objects[0]["shape"]} for c, r in singles])), len(singles)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--captioner", default=None, help="captioner folder (default: the bundled one of cliplab:shapes-tiny)")
    p.add_argument("--n", type=int, default=1000, help="test scenes")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--speed-n", type=int, default=300, help="captions timed per decoder precision (0: skip)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    add_json_option(p)
    args = p.parse_args()
    import numpy as np
    import torch

    from cliplab.caption import Captioner
    from cliplab.caption.metrics import caption_scores
    from cliplab.data import synthetic
    from cliplab.data.synthetic import POSITIONS, SIZES, full_caption

    torch.set_num_threads(args.threads)
    machine = print_machine()
    cap = Captioner.load(args.captioner)
    records = synthetic.generate(args.n, seed=args.seed, split="test")
    feats = cap.features([r.image for r in records])
    t0 = time.perf_counter()
    captions = cap.caption_features(feats.X, beam=args.beam)
    wall = time.perf_counter() - t0
    refs = references(records, args.seed)

    def wrong_size_and_position(spec):
        def shifted(values, v):
            values = list(values)
            return values[(values.index(v) + 1) % len(values)]

        objects = tuple(o.__class__(o.shape, o.color, shifted(SIZES, o.size), shifted(POSITIONS, o.position), o.jitter) for o in spec.objects)
        return full_caption(spec.__class__(objects, spec.background, spec.bg_level, spec.bg_variant, spec.texture_seed))

    rows = {
        "captioner": caption_scores(captions, refs),
        "true full caption (ceiling)": caption_scores([r.caption for r in records], refs),
        "size and position wrong": caption_scores([wrong_size_and_position(r.spec) for r in records], refs),
    }
    right_shape, n_single = right_shape_rate(captions, records)

    def any_order(spec) -> set[str]:
        return {full_caption(spec.__class__(objs, spec.background, 0, 0, 0)) for objs in itertools.permutations(spec.objects)}

    exact = float(np.mean([c in any_order(r.spec) for c, r in zip(captions, records)]))
    print(f"{args.n} test scenes (seed {args.seed}), {n_single} with one object; captioned in {wall:.1f} s (beam {args.beam})")
    print(f"{'captions':<30} {'BLEU-4':>7} {'CIDEr-D':>8}")
    for name, s in rows.items():
        print(f"{name:<30} {s['bleu_4']:>7.3f} {s['cider_d']:>8.3f}")
    ours, ceiling, wrong = rows["captioner"], rows["true full caption (ceiling)"], rows["size and position wrong"]
    print(f"BLEU-4 {ours['bleu_4']:.3f} = {ours['bleu_4'] / ceiling['bleu_4']:.2f}x the true caption's, {ours['bleu_4'] / wrong['bleu_4']:.2f}x "
          f"size-and-position-wrong's (target >= 0.75: {'met' if ours['bleu_4'] >= 0.75 else 'NOT met'})")
    print(f"CIDEr-D {ours['cider_d']:.3f} = {ours['cider_d'] / ceiling['cider_d']:.2f}x the true caption's, {ours['cider_d'] / wrong['cider_d']:.2f}x "
          f"size-and-position-wrong's (target >= 4.5: {'met' if ours['cider_d'] >= 4.5 else 'NOT met'})")
    print(f"right shape on single-object scenes {right_shape:.3f} (target >= 0.95: {'met' if right_shape >= 0.95 else 'NOT met'}); "
          f"captions equal to a full caption {exact:.3f}")
    speed = {}
    if args.speed_n:
        X = feats.X[: args.speed_n]
        reference = cap.caption_features(X)
        for precision in ("fp32", "bf16", "int8"):
            cap.caption_features(X[:8], precision=precision)  # warm-up (and the int8/bf16 copy)
            t0 = time.perf_counter()
            out = cap.caption_features(X, precision=precision)
            secs = time.perf_counter() - t0
            speed[precision] = {"captions_per_s": len(X) / secs, "same_as_fp32": float(np.mean([a == b for a, b in zip(out, reference)]))}
        print(f"decoder on the CPU, {len(X)} captions, {args.threads} thread(s): "
              + "; ".join(f"{k} {v['captions_per_s']:.1f} captions/s ({v['same_as_fp32']:.3f} equal to fp32)" for k, v in speed.items()))  # fmt: skip
    if args.json:
        figures = {
            "bleu_4": ours["bleu_4"], "cider_d": ours["cider_d"], "right_shape_single": right_shape, "exact_full_caption": exact,
            "bleu_4_ratio_vs_true_caption": ours["bleu_4"] / ceiling["bleu_4"], "cider_d_ratio_vs_true_caption": ours["cider_d"] / ceiling["cider_d"],
            "target_bleu_met": ours["bleu_4"] >= 0.75, "target_cider_met": ours["cider_d"] >= 4.5, "target_shape_met": right_shape >= 0.95,
            "n": args.n, "n_single": n_single, "beam": args.beam, "scores": rows, "decoder_speed": speed,
        }  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
