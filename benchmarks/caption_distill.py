"""LightCap's ensemble distillation and ablations (wave3_methods.md §10a(5)), measured on synthetic scenes.

    PYTHONPATH=src python benchmarks/caption_distill.py [--train 3000] [--steps 300] [--teachers 2] [--json FILE]

On the frozen ``cliplab:shapes-tiny``, every captioner below is trained on the same ``--train`` train-split
scenes (1-2 objects, seed 0; each with its full caption), for the same ``--steps`` steps of the same batch
size and learning rate, seed 0 (the teachers: seeds 0, 1, ...):

- ``teacher (seed s)``: ``--teacher-layers`` decoder layers of ``--teacher-width`` (§10a(5): a 6-layer captioner);
- ``student from scratch``: ``--student-layers`` layers of ``--student-width``, cross-entropy only;
- ``student distilled (averaged teachers)``: the same student learning the teachers' averaged tempered
  token distributions (``(1 - alpha) CE + alpha T^2 KL``, ``cliplab.caption.distill``);
- ``student distilled (one head per teacher)``: LightCap's ensemble heads, head m distilled from teacher m;
- ``student without concept extractor`` / ``without modulator``: the scratch student minus that module.

Scored as ``caption_quality.py`` scores the bundled captioner: ``--test`` test-split scenes (seed
``--seed``), references the full caption and a paraphrase, pycocoevalcap's BLEU-4 and CIDEr-D, the share of
single-object scenes whose caption names the right shape, and captions per second of the decoder alone
(greedy, fp32, ``--speed-n`` captions, ``--threads`` threads). The named baseline is the first teacher:
the student's CIDEr-D as a share of its, at the parameters' ratio; distillation is measured against the
student from scratch, the ablations against the full student.
"""

from __future__ import annotations

import argparse
import time

from _machine import add_json_option, print_machine, write_json
from caption_quality import references, right_shape_rate

MODEL = "cliplab:shapes-tiny"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=3000, help="training scenes (train split, seed 0)")
    p.add_argument("--test", type=int, default=300, help="test scenes (test split, seed --seed)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--steps", type=int, default=300, help="training steps of every captioner")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--teachers", type=int, default=2, help="teachers (seeds 0, 1, ...)")
    p.add_argument("--teacher-layers", type=int, default=6)
    p.add_argument("--teacher-width", type=int, default=192)
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--student-width", type=int, default=128)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--distill-weight", type=float, default=0.5, help="alpha: the weight of the distillation term")
    p.add_argument("--speed-n", type=int, default=100, help="captions timed per captioner")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    add_json_option(p)
    args = p.parse_args()
    import torch

    from cliplab.caption import Captioner
    from cliplab.caption.metrics import caption_scores
    from cliplab.data import synthetic
    from cliplab.models import load_model

    torch.set_num_threads(args.threads)
    machine = print_machine()
    model = load_model(MODEL)
    common = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "temperature": args.temperature, "distill_weight": args.distill_weight}
    student = {"layers": args.student_layers, "width": args.student_width, **common}
    t0 = time.perf_counter()
    train = synthetic.generate(args.train, seed=0, split="train")
    test = synthetic.generate(args.test, seed=args.seed, split="test")
    probe = Captioner(model)
    X_train = probe.features([r.image for r in train]).X
    X_test = probe.features([r.image for r in test]).X
    captions = [r.caption for r in train]
    refs = references(test, args.seed)
    print(f"caption features of {len(train)} train and {len(test)} test scenes in {time.perf_counter() - t0:.0f} s", flush=True)

    rows: dict[str, dict] = {}

    def run(name: str, cap: Captioner, teachers: list[Captioner] | None = None) -> Captioner:
        start = time.perf_counter()
        cap.fit_features(X_train, captions, teachers=teachers)
        train_s = time.perf_counter() - start
        out = cap.caption_features(X_test)
        scores = caption_scores(out, refs)
        X = X_test[: args.speed_n]
        start = time.perf_counter()
        cap.caption_features(X)
        speed = len(X) / (time.perf_counter() - start)
        rows[name] = {
            "params": sum(q.numel() for q in cap.net_.parameters()), "bleu_4": scores["bleu_4"], "cider_d": scores["cider_d"],
            "right_shape": right_shape_rate(out, test)[0], "captions_per_s": speed, "train_s": train_s,
        }  # fmt: skip
        r = rows[name]
        print(f"{name:<42} {r['params'] / 1e6:>6.2f} M  BLEU-4 {r['bleu_4']:.3f}  CIDEr-D {r['cider_d']:.3f}  right shape {r['right_shape']:.3f}  "
              f"{r['captions_per_s']:.0f} captions/s  (trained in {train_s:.0f} s)", flush=True)  # fmt: skip
        return cap

    teachers = [run(f"teacher (seed {s})", Captioner(model, layers=args.teacher_layers, width=args.teacher_width, seed=s, **common))
                for s in range(args.teachers)]  # fmt: skip
    run("student from scratch", Captioner(model, **student))
    run("student distilled (averaged teachers)", Captioner(model, **student), teachers)
    if args.teachers > 1:
        run("student distilled (one head per teacher)", Captioner(model, ensemble_heads=args.teachers, **student), teachers)
    run("student without concept extractor", Captioner(model, use_concepts=False, **student))
    run("student without modulator", Captioner(model, use_modulator=False, **student))

    teacher, scratch = rows["teacher (seed 0)"], rows["student from scratch"]
    distilled = max((r for n, r in rows.items() if n.startswith("student distilled")), key=lambda r: r["cider_d"])
    figures = {
        "teacher_cider_d": teacher["cider_d"],
        "student_cider_d": scratch["cider_d"],
        "distilled_cider_d": distilled["cider_d"],
        "distilled_cider_ratio_vs_teacher": distilled["cider_d"] / teacher["cider_d"],
        "student_param_ratio_vs_teacher": scratch["params"] / teacher["params"],
        "distillation_gain_cider_d": distilled["cider_d"] - scratch["cider_d"],
        "concept_extractor_gain_cider_d": scratch["cider_d"] - rows["student without concept extractor"]["cider_d"],
        "modulator_gain_cider_d": scratch["cider_d"] - rows["student without modulator"]["cider_d"],
    }
    print(f"best distilled student: CIDEr-D {distilled['cider_d']:.3f} = {figures['distilled_cider_ratio_vs_teacher']:.2f}x the teacher's "
          f"at {figures['student_param_ratio_vs_teacher']:.2f}x its parameters; {figures['distillation_gain_cider_d']:+.3f} over the student "
          f"from scratch; concept extractor {figures['concept_extractor_gain_cider_d']:+.3f}, modulator {figures['modulator_gain_cider_d']:+.3f} CIDEr-D")  # fmt: skip
    if args.json:
        figures.update(n_train=args.train, n_test=args.test, steps=args.steps, teachers=args.teachers, captioners=rows)
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
