"""Linear-probe accuracy per scene attribute: the last layer (the model's embedding) vs multi-level features (COMM).

    PYTHONPATH=src python benchmarks/multilevel_probe.py [--model cliplab:shapes-vit] [--train 200] [--test 500] [--json FILE]

Scenes: one object each (so every attribute has one label); the probe is fitted on ``--train`` scenes
of the train split (seed ``--train-seed``) and scored on ``--test`` scenes of the test split (seed
``--test-seed``, never used to fit anything). Attributes: shape (8), colour (8), size (3), position (9).
The head is ``cliplab.adapt.LinearProbe`` with its defaults (C swept on a validation carve of the
training rows): on multi-level features its weights are COMM's learned linear merge and the classifier
in one.

Rows: ``last layer`` (the baseline: the model's own embedding), then ``model.encode_images(images,
layers=..., tokens=...)`` for each feature set of ``--variants`` (``LAYERS/TOKENS``, ';'-separated).
The last line prints the headline, ``--headline`` (default ``-1,-2,-3/cls+grid2``), against the
baseline on every attribute; the ``-1/...`` rows show how much of a gain the layers bring beside the
tokens.
"""

from __future__ import annotations

import argparse
import time
import warnings

from _machine import add_json_option, print_machine, write_json

ATTRIBUTES = ("shape", "color", "size", "position")
VARIANTS = "-1/cls;-1,-2,-3/cls;-1,-2,-3/cls+mean;-1/cls+grid2;-1,-2,-3/cls+grid2"
BASELINE = "last layer"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cliplab:shapes-vit")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--train", type=int, default=200, help="training scenes (the probe's rows)")
    p.add_argument("--test", type=int, default=500, help="test scenes")
    p.add_argument("--train-seed", type=int, default=1)
    p.add_argument("--test-seed", type=int, default=2026)
    p.add_argument("--variants", default=VARIANTS, help="feature sets LAYERS/TOKENS, ';'-separated")
    p.add_argument("--headline", default="-1,-2,-3/cls+grid2", help="the feature set compared with the last layer on the last line")
    p.add_argument("--per-layer", action="store_true", help="also probe each block's class token alone")
    p.add_argument("--threads", type=int, default=2)
    add_json_option(p)
    args = p.parse_args()
    import numpy as np
    import torch

    from cliplab.adapt import LinearProbe
    from cliplab.data import synthetic
    from cliplab.evaluate.scenes import single_object_scenes
    from cliplab.models import load_model

    torch.set_num_threads(args.threads)
    machine = print_machine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(args.model, pretrained=args.pretrained, device="cpu")
    train = single_object_scenes(args.train, seed=args.train_seed, split="train")
    test = single_object_scenes(args.test, seed=args.test_seed, split="test")
    labels = {a: [np.array([synthetic.attribute_label(r.objects, r.background, a) for r in scenes]) for scenes in (train, test)]
              for a in ATTRIBUTES}  # fmt: skip
    variants = [v for v in args.variants.split(";") if v]
    if args.headline not in variants:
        variants.append(args.headline)
    if args.per_layer:
        depth = len(model.multilevel([-1]).parts.blocks)
        variants += [f"{-i}/cls" for i in range(depth, 1, -1) if f"{-i}/cls" not in variants]
    print(f"{model.name}: linear probe on {args.train} train scenes (seed {args.train_seed}), "
          f"scored on {args.test} test scenes (seed {args.test_seed}), one object each")  # fmt: skip

    def features(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name == BASELINE:
            encode = model.encode_images
        else:
            layers, tokens = name.split("/")
            encode = lambda images: model.encode_images(images, layers=layers, tokens=tokens)
        return encode([r.image for r in train]), encode([r.image for r in test])

    rows: dict[str, dict[str, float]] = {}
    for name in [BASELINE, *variants]:
        start = time.perf_counter()
        X_train, X_test = features(name)
        row: dict[str, float] = {"dims": X_train.shape[1]}
        for attribute in ATTRIBUTES:
            y_train, y_test = labels[attribute]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs convergence notices of the C sweep
                probe = LinearProbe().fit(X_train, y_train)
            row[attribute] = float((probe.predict(X_test) == y_test).mean())
        row["seconds"] = time.perf_counter() - start
        rows[name] = row
        gains = "  ".join(f"{a} {row[a]:.3f} ({100 * (row[a] - rows[BASELINE][a]):+.1f})" for a in ATTRIBUTES)
        print(f"{name:>22}  {row['dims']:>5} dims  {gains}  [{row['seconds']:.0f} s]", flush=True)
    head, base = rows[args.headline], rows[BASELINE]
    gain = {a: head[a] - base[a] for a in ATTRIBUTES}
    print(f"layers={args.headline}: position {head['position']:.3f} vs last layer {base['position']:.3f}: "
          f"gain {100 * gain['position']:+.1f} points ({head['position'] / base['position']:.2f}x); "
          + ", ".join(f"{a} {100 * gain[a]:+.1f}" for a in ATTRIBUTES if a != "position"))  # fmt: skip
    if args.json:
        figures = {"probe_accuracy": rows, "headline": args.headline, "baseline": BASELINE,
                   "gain_points": {a: 100 * g for a, g in gain.items()}, "train": args.train, "test": args.test}  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
