"""Every training objective, measured: the same start, steps, data and seed, one objective changed.

    PYTHONPATH=src python benchmarks/objectives.py [--steps 8] [--batch-size 32] [--eval-n 200] [--only siglip,cloc]
                                                  [--threads 1] [--json FILE]

Each objective post-trains a fresh copy of ``cliplab:shapes-vit`` alone and with ``clip`` (``X`` and ``clip,X``),
and of ``cliplab:shapes-tiny`` too when the objective needs no patch tokens (no region batch), for ``--steps``
steps of ``--batch-size`` from ``synthetic:--pool`` (train split) with the trainer's defaults (AdamW, lr
``--lr``, warm-up a tenth of the steps then cosine, seed ``--seed``). Objectives that distill from a teacher
(distill, fmdistill, textdistill) get ``--teacher cliplab:shapes-tiny``; region objectives that distill get the
frozen starting model (the trainer's default), and no region phrase names "heart" or "crescent"
(``--region-exclude``: those shapes reach training only through images and captions). The region objectives (cloc, grain, farslip, declip, dclip, pacl)
run when this cliplab has them; a missing one is skipped with a printed note.

Figures per run (test split, seed 2026, scenes training never sees), with the starting model's row (``start``,
step 0) and each row's change against it, and ``train_s``, the seconds the run trained:

- zero-shot accuracy of shape, colour, size and position on ``--eval-n`` single-object scenes;
- ``t2i_r1``: text->image R@1 with full captions of ``--eval-n`` 1-2-object scenes;
- ``binding``: colour binding (the true full caption beats its colour-swapped twin) on two-object scenes;
- ``gap``: the modality gap (distance of the image and caption centroids, Liang et al. 2022) of the retrieval scenes;
- ``region_acc``: each object's box through ``model.encode_regions``, classified by shape (``cliplab.evaluate.regions``);
- ``miou``, ``fg_iou``, ``held_out_iou``: plain ``naclip`` (no PAMR, no region relabelling) mIoU over background +
  8 shapes, foreground IoU, and the mean IoU of "heart" and "crescent" on ``min(--eval-n, 100)`` scenes.
"""

from __future__ import annotations

import argparse
import time

from _machine import add_json_option, print_machine, write_json

MODELS = {"vit": "cliplab:shapes-vit", "tiny": "cliplab:shapes-tiny"}
EXISTING = ("clip", "siglip", "infoloob", "cloob", "hardneg", "m2mix", "rafa", "hycd", "distill", "fmdistill", "textdistill", "pcm", "dino", "selfdist")
REGION = ("cloc", "grain", "farslip", "declip", "dclip", "pacl")  # the region objectives (issue #21), run once they are in the registry
TEACHER = "cliplab:shapes-tiny"  # for the objectives that need --teacher
ATTRIBUTES = ("shape", "color", "size", "position")


def runs(names: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(model key, objectives spec) of every run for ``names``, and the names this cliplab lacks."""
    from cliplab.train.objectives import REGISTRY

    out, missing = [], []
    for name in names:
        if name not in REGISTRY:
            missing.append(name)
            continue
        specs = [name] if name == "clip" else [name, f"clip,{name}"]
        keys = ["vit"] if "regions" in REGISTRY[name].needs else list(MODELS)  # a region batch needs patch tokens
        out += [(key, spec) for key in keys for spec in specs]
    return out, missing


def score(model, n: int) -> dict[str, float | None]:
    """The figures of one model (see the module docstring)."""
    from cliplab.evaluate.regions import dense_figures, region_accuracy
    from cliplab.evaluate.representation import modality_gap
    from cliplab.evaluate.scenes import evaluate_scenes
    from cliplab.train.eval_hooks import DENSE_SCENES_MAX, EVAL_SEED, colour_binding, evaluating

    with evaluating(model):
        scenes = evaluate_scenes(model, n_classify=n, n_retrieval=n, seed=EVAL_SEED, attributes=ATTRIBUTES)
        row = {f"zs_{a}": r.accuracy for a, r in scenes.attributes.items()}
        row["t2i_r1"] = scenes.retrieval["image_retrieval_recall@1"]
        row["binding"] = colour_binding(model, n, EVAL_SEED)["full"]
        row["gap"] = modality_gap(scenes.image_emb, scenes.text_emb)
        row["region_acc"] = region_accuracy(model, n, EVAL_SEED)
        dense = dense_figures(model, min(n, DENSE_SCENES_MAX), EVAL_SEED)
        row.update(miou=dense["miou"], fg_iou=dense["foreground_iou"], held_out_iou=dense["held_out_iou"])
    return row


def post_train(start, spec: str, args, out: str):
    """A fresh copy of ``start`` trained with the objectives ``spec``."""
    import copy

    from cliplab.evaluate.regions import HELD_OUT_SHAPES
    from cliplab.train.config import TrainConfig
    from cliplab.train.objectives import REGISTRY, parse_objectives
    from cliplab.train.trainer import train

    needs = set().union(*(REGISTRY[o.name].needs for o in parse_objectives(spec)))
    model = copy.deepcopy(start)
    config = TrainConfig(model=start.name, data=f"synthetic:{args.pool}", objectives=spec, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, out=out, ckpt_every=0, evaluate="none", log_every=max(1, args.steps // 4),
                         workers=0, progress=False, device="cpu", teacher=TEACHER if needs & {"teacher", "teacher_text"} else None,
                         region_exclude=",".join(HELD_OUT_SHAPES))  # fmt: skip
    train(config, model=model)
    return model


def delta(row: dict, base: dict) -> dict[str, float | None]:
    return {k: None if v is None or base[k] is None else v - base[k] for k, v in row.items()}


def print_table(rows: dict[str, dict], deltas: dict[str, dict]) -> None:
    """One table: every figure, with its change against the model's start row beside it."""
    columns = list(next(iter(deltas.values())))
    print(f"{'run':<22}" + "".join(f"{c:>16}" for c in columns))
    for name, row in rows.items():
        cells = []
        for c in columns:
            value, change = row[c], deltas[name][c]
            text = "n/a" if value is None else f"{value:.3f}"
            cells.append(text + ("" if change is None or name.endswith(" start") else f" ({change:+.3f})").rjust(9))
        print(f"{name:<22}" + "".join(f"{cell:>16}" for cell in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (5e-4, the trainer's default, costs clip alone ~13 points of shape accuracy in 8 steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=5000, help="training scenes: synthetic:POOL (train split)")
    p.add_argument("--eval-n", type=int, default=200, help="test scenes per figure (dense: at most 100)")
    p.add_argument("--only", default=None, help="comma list of objectives to run (default all: " + ", ".join(EXISTING + REGION) + ")")
    p.add_argument("--threads", type=int, default=1)
    add_json_option(p)
    args = p.parse_args()
    import tempfile
    import warnings
    from pathlib import Path

    import torch

    from cliplab.models import load_model

    torch.set_num_threads(args.threads)
    machine = print_machine()
    names = [n.strip().lower() for n in args.only.split(",") if n.strip()] if args.only else list(EXISTING + REGION)
    planned, missing = runs(names)
    for name in missing:
        print(f"note: {name} is not among this cliplab's objectives yet: skipped", flush=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        starts = {key: load_model(MODELS[key], device="cpu") for key in MODELS if any(k == key for k, _ in planned)}
    rows, deltas = {}, {}
    for key, start in starts.items():
        rows[f"{key} start"] = score(start, args.eval_n)
        deltas[f"{key} start"] = delta(rows[f"{key} start"], rows[f"{key} start"])
    with tempfile.TemporaryDirectory() as tmp:
        for i, (key, spec) in enumerate(planned):
            name, t1 = f"{key} {spec}", time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the scheduler's and the teacher's notes, the same for every run
                model = post_train(starts[key], spec, args, str(Path(tmp) / f"run{i}"))
            seconds = time.perf_counter() - t1
            rows[name] = score(model, args.eval_n)
            deltas[name] = delta(rows[name], rows[f"{key} start"])
            rows[name]["train_s"] = round(seconds, 1)
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[name].items() if v is not None), flush=True)
    print_table(rows, deltas)
    wall = time.perf_counter() - t0
    print(f"{len(planned)} runs of {args.steps} steps x {args.batch_size} in {wall / 60:.1f} min")
    if args.json:
        figures = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "eval_n": args.eval_n, "teacher": TEACHER,
                   "wall_s": round(wall, 1), "skipped": ", ".join(missing) or "none", "runs": rows, "change_vs_start": deltas}  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
