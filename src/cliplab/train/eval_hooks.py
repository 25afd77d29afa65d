"""What the trainer measures on synthetic test scenes: ``scenes`` (zero-shot accuracy per attribute,
caption retrieval R@k, and colour binding: is the true caption preferred to the same caption with the
two objects' colours exchanged?), ``regions`` (region accuracy) and ``dense`` (plain naclip mIoU,
foreground IoU, held-out shapes' IoU; :mod:`cliplab.evaluate.regions`). ``evaluator`` turns a
``TrainConfig.evaluate`` value into the trainer's hook."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch

from cliplab.data import synthetic
from cliplab.models.base import Model
from cliplab.train.modes import train_learning_parts

EVAL_SEED = 2026  # scenes of the test split that training (train split) never sees
REGION_SCENES_MAX = 500  # scenes for region accuracy (about 1.6 boxes each); more adds seconds, not precision that matters
DENSE_SCENES_MAX = 100  # scenes for the dense figures: segmentation is the slow one


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


@contextmanager
def evaluating(model: Model) -> Iterator[None]:
    """``model`` as it is mid-training, ready to be evaluated: its module in eval mode (then back in the
    mode it was in, frozen parts in eval mode), its logit scale the module's current one, no gradients recorded."""
    module = model.torch_module
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            model.logit_scale = float(module.logit_scale.detach().float().exp().reshape(-1)[0])
            yield
    finally:
        if was_training:
            train_learning_parts(module)


def scene_evaluation(model: Model, n: int, seed: int = EVAL_SEED) -> dict:
    """Zero-shot accuracy (single-object scenes), retrieval R@k and colour binding on ``n`` scenes each."""
    from cliplab.evaluate.scenes import evaluate_scenes

    figures = evaluate_scenes(model, n_classify=n, n_retrieval=n, seed=seed).figures()
    return {"zeroshot_accuracy": figures["zeroshot_accuracy"], "retrieval": figures["retrieval"], "colour_binding": colour_binding(model, n, seed)}


def region_evaluation(model: Model, n: int, seed: int = EVAL_SEED) -> dict:
    """Region accuracy on ``n`` (at most ``REGION_SCENES_MAX``) 1-2-object scenes."""
    from cliplab.evaluate.regions import region_accuracy

    return {"region_accuracy": region_accuracy(model, min(n, REGION_SCENES_MAX), seed)}


def dense_evaluation(model: Model, n: int, seed: int = EVAL_SEED) -> dict:
    """Plain naclip mIoU, foreground IoU and held-out shapes' IoU on ``n`` (at most ``DENSE_SCENES_MAX``) scenes."""
    from cliplab.evaluate.regions import dense_figures

    return {"dense": dense_figures(model, min(n, DENSE_SCENES_MAX), seed)}


EVALUATIONS: dict[str, Callable[[Model, int, int], dict]] = {"scenes": scene_evaluation, "regions": region_evaluation, "dense": dense_evaluation}


def evaluate(model: Model, n: int, seed: int = EVAL_SEED, names: Sequence[str] = ("scenes",)) -> dict:
    """The figures of the evaluations ``names`` (keys of ``EVALUATIONS``) of ``model`` in its current
    weights (see :func:`evaluating`), merged into one dict."""
    out: dict = {}
    with evaluating(model):
        for name in names:
            out.update(EVALUATIONS[name](model, n, seed))
    return out


def evaluator(spec: str, model_spec: str, n: int) -> Callable[[Model], dict] | None:
    """The evaluation hook for ``spec`` (a ``TrainConfig.evaluate`` value: auto, none or a comma list of
    ``EVALUATIONS``) in a run of ``model_spec``; None: no evaluation. "auto" is "scenes" for ``cliplab:``
    models (and model folders made from them) only: the synthetic scenes say little about an ``openclip:``
    or ``hf:`` model trained on other data. ``n``: scenes per synthetic evaluation (0: none)."""
    from cliplab.models.folder import base_spec
    from cliplab.models.spec import parse_spec
    from cliplab.train.config import evaluation_names

    names = evaluation_names(spec)
    if names == ("auto",):
        parsed = parse_spec(model_spec)
        if parsed.kind == "folder":
            parsed = parse_spec(base_spec(parsed.target))
        names = ("scenes",) if parsed.kind == "cliplab" else ()
    names = tuple(name for name in names if name != "none")
    return partial(evaluate, n=n, names=names) if names and n > 0 else None
