"""Fit time of the training-free heads at ImageNet scale: 1,000 classes x 16 shots x 512-d features.

    PYTHONPATH=src nice -n 10 python benchmarks/adapt_speed.py [--classes 1000] [--shots 16] [--dim 512] [--json FILE]

Prints one line per head, ``<name> fit seconds: S``, plus the ratio against GDA (the baseline: one
covariance and one pinv). Each head searches its hyperparameters on a validation set of 4 images
per class drawn separately (CoOp's protocol: min(shots, 4)), as ``cliplab adapt`` does. LinearProbe
runs its coarse C sweep without the 8-step refinement here (``--refine-steps``), since each lbfgs fit
at this size takes minutes on 2 cores (``--skip-linear`` leaves it out).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _machine import add_json_option, print_machine, write_json


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--val-shots", type=int, default=4)
    parser.add_argument("--refine-steps", type=int, default=0)
    parser.add_argument("--skip-linear", action="store_true")
    add_json_option(parser)
    args = parser.parse_args()
    from cliplab.adapt import GDA, LinearProbe, TipAdapter

    machine = print_machine()
    rng = np.random.default_rng(0)
    means = rng.normal(size=(args.classes, args.dim))
    X = unit(np.repeat(means, args.shots, 0) + 3.0 * rng.normal(size=(args.classes * args.shots, args.dim)))
    y = np.repeat(np.arange(args.classes), args.shots)
    X_val = unit(np.repeat(means, args.val_shots, 0) + 3.0 * rng.normal(size=(args.classes * args.val_shots, args.dim)))
    y_val = np.repeat(np.arange(args.classes), args.val_shots)
    text = unit(means + 3.0 * rng.normal(size=means.shape))
    print(f"{args.classes} classes x {args.shots} shots x {args.dim}-d; validation {args.val_shots} per class")
    heads = {
        "GDA": GDA(text, logit_scale=100.0),
        "TipAdapter": TipAdapter(text, logit_scale=100.0),
    }
    if not args.skip_linear:
        heads["LinearProbe"] = LinearProbe(refine_steps=args.refine_steps)
    baseline, rows = None, {}
    for name, head in heads.items():
        start = time.perf_counter()
        head.fit(X, y, X_val, y_val)
        seconds = time.perf_counter() - start
        baseline = baseline or seconds
        rows[name] = {"fit_s": seconds, "x_gda": seconds / baseline, "val_accuracy": head.val_accuracy_}
        print(f"{name} fit seconds: {seconds:.2f}  ({seconds / baseline:.2f}x GDA; val accuracy {head.val_accuracy_:.3f})")
    if args.json:
        write_json(args.json, {"heads": rows}, machine)


if __name__ == "__main__":
    main()
