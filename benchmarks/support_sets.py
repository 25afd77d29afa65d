"""Support sets with zero labelled images (SuS-X / CapS-Adapter, issue #23 §2): zero-shot vs a
``SupportSetAdapter`` on a support set built by retrieval or by generation, per scene attribute.

    PYTHONPATH=src nice -n 10 python benchmarks/support_sets.py [--attributes size,position] [--seeds 0,1,2] [--json FILE]

Task: single-object synthetic test scenes (``--test`` of them, seed 202, split test), classified by
the first object's size (3 classes) or position (9), with the bundled model. Every method reads the
same prompts, ``cliplab.data.synthetic.attribute_prompts`` ("a photo of a small shape", "a shape at
the top left"). No labelled image is used anywhere:

* retrieval: the ``--k`` images nearest to each class's prompt among ``--pool`` unlabelled
  single-object scenes (seed 101), labelled by the prompt that found them (SuS-LC);
* generation: ``--n-per-class`` scenes the renderer draws for each prompt (``SceneGenerator``, SuS-SD;
  generator seeds ``--seeds``, the figure is their mean).

The adapter's alpha, beta and gamma are searched on a quarter of the support set itself (its labels
are the prompts that made it). Prints each accuracy and the gain over zero-shot in points.
"""

from __future__ import annotations

import argparse

import numpy as np
from _machine import add_json_option, print_machine, write_json


def scenes(n: int, seed: int) -> list:
    from cliplab.data import synthetic

    return [synthetic.scene(i, seed=seed, split="test", max_objects=1) for i in range(n)]


def measure(model, attribute: str, X_test: np.ndarray, test: list, X_pool: np.ndarray, k: int = 32,
            n_per_class: int = 32, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, float]:  # fmt: skip
    """Accuracies of zero-shot, support-from-retrieval and support-from-generation (mean over seeds)."""
    from cliplab.adapt.support_sets import (
        GenerationSource,
        RetrievalSource,
        SceneGenerator,
        prompt_weights,
        support_set_adapter,
    )
    from cliplab.data import synthetic

    prompts = synthetic.attribute_prompts(attribute)
    classes = sorted(prompts)
    y = np.array([synthetic.attribute_label(r.objects, r.background, attribute) for r in test])
    W = prompt_weights(model, {c: prompts[c] for c in classes})
    zero_shot = float((np.array(classes)[(X_test @ W.T).argmax(1)] == y).mean())
    retrieval, _ = support_set_adapter(model, prompts, [RetrievalSource(X_pool, k=k)])
    generated = [support_set_adapter(model, prompts, [GenerationSource(SceneGenerator(seed=s), n_per_class=n_per_class)])[0]
                 for s in seeds]  # fmt: skip
    return {
        "zero_shot": zero_shot,
        "retrieval": float(retrieval.score(X_test, y)),
        "generation": float(np.mean([h.score(X_test, y) for h in generated])),
        "generation_per_seed": [float(h.score(X_test, y)) for h in generated],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--attributes", default="size,position")
    parser.add_argument("--test", type=int, default=450, help="test scenes")
    parser.add_argument("--pool", type=int, default=600, help="unlabelled pool scenes for retrieval")
    parser.add_argument("--k", type=int, default=32, help="images retrieved per class")
    parser.add_argument("--n-per-class", type=int, default=32, help="images generated per class")
    parser.add_argument("--seeds", default="0,1,2", help="generator seeds")
    add_json_option(parser)
    args = parser.parse_args()
    from cliplab.models import load_model

    machine = print_machine()
    model = load_model(args.model, device="cpu")
    test, pool = scenes(args.test, 202), scenes(args.pool, 101)
    X_test = model.encode_images([r.image for r in test])
    X_pool = model.encode_images([r.image for r in pool])
    seeds = tuple(int(s) for s in args.seeds.split(","))
    print(f"{args.model}: {args.test} test scenes, pool {args.pool} (k={args.k}), {args.n_per_class} generated per class, seeds {seeds}")
    rows = {}
    for attribute in args.attributes.split(","):
        r = measure(model, attribute, X_test, test, X_pool, args.k, args.n_per_class, seeds)
        rows[attribute] = {"zero_shot": r["zero_shot"], "retrieval": r["retrieval"], "generation": r["generation"],
                           "retrieval_gain_points": 100 * (r["retrieval"] - r["zero_shot"]),
                           "generation_gain_points": 100 * (r["generation"] - r["zero_shot"])}  # fmt: skip
        print(f"{attribute}: zero-shot {r['zero_shot']:.3f}  support-from-retrieval {r['retrieval']:.3f} "
              f"({100 * (r['retrieval'] - r['zero_shot']):+.1f} points)  support-from-generation {r['generation']:.3f} "
              f"({100 * (r['generation'] - r['zero_shot']):+.1f} points; per seed "
              f"{', '.join(f'{a:.3f}' for a in r['generation_per_seed'])})", flush=True)  # fmt: skip
    if args.json:
        write_json(args.json, {"attributes": rows}, machine)


if __name__ == "__main__":
    main()
