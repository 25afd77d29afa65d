"""CLIP-MoE across training seeds: the runs of ``benchmarks/moe.py`` (their result files) side by side,
their mean, and issue #25's targets on the mean.

    python benchmarks/moe_seeds.py benchmarks/results/moe.json benchmarks/results/moe_seed{1,2,3,4}.json [--json FILE]

One training seed's run moves the weakest attribute's gain by about a point either way (other clusters,
batches and routers); a recipe meets the targets when the mean over seeds does, on each set of test
scenes: no attribute more than 1 point below the dense model, and +3 points or more on the weakest
attribute (size or position). Reads the files only: nothing is trained here.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _machine import add_json_option, write_json
from moe import ATTRIBUTES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="result files of benchmarks/moe.py (complete runs, any training seeds)")
    add_json_option(p)
    args = p.parse_args()
    runs = [read_run(path) for path in args.runs]
    scene_sets = {"seed 2026 scenes": "points_vs_dense", f"seed {runs[0]['check_seed']} scenes": "points_vs_dense_check_seed"}
    figures: dict = {"runs": {}, "mean": {}, "targets": {}}
    for run in runs:
        seed = run["settings"]["seed"]
        figures["runs"][f"training seed {seed}"] = {f"{a} ({s})": run[key]["clip-moe"][a] for s, key in scene_sets.items() for a in ATTRIBUTES}
    weakest = runs[0]["weakest_attribute"]
    for scenes, key in scene_sets.items():
        mean = {a: round(statistics.fmean(run[key]["clip-moe"][a] for run in runs), 2) for a in ATTRIBUTES}
        worst = min(ATTRIBUTES, key=lambda a: mean[a])
        figures["mean"][scenes] = mean
        figures["targets"][scenes] = {"weakest attribute": weakest, "gain": mean[weakest], "met (>= +3)": mean[weakest] >= 3,
                                      "worst attribute": worst, "change": mean[worst], "met (>= -1)": mean[worst] >= -1,
                                      "seeds": len(runs)}  # fmt: skip
        print(f"{scenes}, mean of {len(runs)} training seeds: " + ", ".join(f"{a} {mean[a]:+.2f}" for a in ATTRIBUTES))
        print(f"  weakest attribute {weakest} {mean[weakest]:+.2f} (target >= +3: {'met' if mean[weakest] >= 3 else 'missed'}); "
              f"worst {worst} {mean[worst]:+.2f} (target >= -1: {'met' if mean[worst] >= -1 else 'missed'})")  # fmt: skip
        for run in runs:
            points = run[key]["clip-moe"]
            print(f"    training seed {run['settings']['seed']}: " + ", ".join(f"{a} {points[a]:+.1f}" for a in ATTRIBUTES))
    if args.json:
        write_json(args.json, figures)


def read_run(path: str) -> dict:
    """The figures of one complete ``benchmarks/moe.py`` result file."""
    record = json.loads(Path(path).read_text())
    if record.get("benchmark") != "moe" or not record["figures"].get("complete") or "points_vs_dense_check_seed" not in record["figures"]:
        raise SystemExit(f"{path}: not a complete benchmarks/moe.py result with a second set of scenes; give the files that run writes")
    return record["figures"]


if __name__ == "__main__":
    main()
