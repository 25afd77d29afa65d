"""What the trainer measures on synthetic scenes: zero-shot accuracy per attribute, caption
retrieval R@k, and colour binding (is the true caption preferred to the same caption with the
two objects' colours exchanged?)."""

from __future__ import annotations

import numpy as np

from cliplab.data import synthetic
from cliplab.models.base import Model

EVAL_SEED = 2026  # scenes of the test split that training (train split) never sees


def colour_binding(model: Model, n: int, seed: int = EVAL_SEED) -> dict[str, float]:
    """Share of two-object scenes (objects of different colours) whose true caption scores higher
    than its colour-swapped twin, for the full and the short caption."""
    scenes = [r for r in synthetic.generate(n, seed=seed + 7, split="test", min_objects=2, max_objects=2)
              if r.objects[0]["color"] != r.objects[1]["color"]]  # fmt: skip
    image = model.encode_images([r.image for r in scenes])
    out = {}
    for name, caption in (("full", synthetic.full_caption), ("short", synthetic.short_caption)):
        true = model.encode_texts([caption(r.spec) for r in scenes])
        swapped = model.encode_texts([caption(synthetic.swap_colours(r.spec)) for r in scenes])
        out[name] = float(np.mean((image * true).sum(1) > (image * swapped).sum(1)))
    return out


def evaluate(model: Model, n: int, seed: int = EVAL_SEED) -> dict:
    """Zero-shot accuracy (single-object scenes), retrieval R@k and colour binding of ``model``
    in its current weights (its module is put in eval mode meanwhile)."""
    from cliplab.evaluate.scenes import evaluate_scenes

    module = model.torch_module
    was_training = module.training
    module.eval()
    try:
        model.logit_scale = float(module.logit_scale.detach().float().exp().reshape(-1)[0])
        figures = evaluate_scenes(model, n_classify=n, n_retrieval=n, seed=seed).figures()
        binding = colour_binding(model, n, seed)
    finally:
        module.train(was_training)
    return {"zeroshot_accuracy": figures["zeroshot_accuracy"], "retrieval": figures["retrieval"], "colour_binding": binding}



