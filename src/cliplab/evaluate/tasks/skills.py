"""Compositional skills on synthetic scenes, where the ground truth is known exactly.

Each skill is a two-way (or n-way) choice between captions that differ only in what the skill
tests, scored by the image-caption cosine; ties count as wrong.
- binding: two-object scenes; the true full caption against the twin whose two objects swap one
  attribute (colour, shape or size), so both captions name the same words and only who-has-what differs.
- spatial: "X to the left of Y" against "X to the right of Y" (and above/below) for two objects in
  different columns (rows); plus ``spatial_absolute``: the full caption against the twin whose two
  objects swap positions.
- counting: "a picture of N shapes", N = 1..4, as a 4-way zero-shot choice.
- long_caption_retrieval: text-to-image recall@1 with the full captions of 3-4-object scenes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from cliplab.data import synthetic
from cliplab.data.synthetic import SceneSpec
from cliplab.evaluate import plots
from cliplab.evaluate.metrics import retrieval_metrics
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import TaskResult, header

BINDING_ATTRIBUTES = ("color", "shape", "size")
COUNT_WORDS = ("one", "two", "three", "four")


@dataclass
class SkillRow:
    skill: str
    variant: str
    n: int
    accuracy: float
    chance: float


@dataclass
class SkillsResult(TaskResult):
    rows: list[SkillRow] = field(default_factory=list)
    split: str = "test"
    seed: int = 0


def swap_attribute(spec: SceneSpec, attribute: str) -> SceneSpec | None:
    """The twin of a two-object scene whose objects exchange ``attribute``; None when they share it."""
    a, b = spec.objects[:2]
    va, vb = getattr(a, attribute), getattr(b, attribute)
    if va == vb:
        return None
    return replace(spec, objects=(replace(a, **{attribute: vb}), replace(b, **{attribute: va})) + spec.objects[2:])


def _phrase(obj) -> str:
    return synthetic.with_article(f"{obj.color} {obj.shape}")


def relation_captions(spec: SceneSpec) -> list[tuple[str, str, str]]:
    """(axis, true caption, swapped caption) for each axis on which the two objects differ:
    'a red star to the left of a blue square' vs '... to the right of ...'."""
    a, b = spec.objects[:2]
    (ra, ca), (rb, cb) = synthetic.POSITIONS[a.position], synthetic.POSITIONS[b.position]
    out = []
    if ca != cb:
        true, false = ("to the left of", "to the right of") if ca < cb else ("to the right of", "to the left of")
        out.append(("left/right", f"{_phrase(a)} {true} {_phrase(b)}", f"{_phrase(a)} {false} {_phrase(b)}"))
    if ra != rb:
        true, false = ("above", "below") if ra < rb else ("below", "above")
        out.append(("above/below", f"{_phrase(a)} {true} {_phrase(b)}", f"{_phrase(a)} {false} {_phrase(b)}"))
    return out


def count_prompt(n: int) -> str:
    return f"a picture of {COUNT_WORDS[n - 1]} shape{'s' if n > 1 else ''}"


def _pair_wins(model, image_emb: np.ndarray, true: list[str], false: list[str]) -> np.ndarray:
    t, f = model.encode_texts(true), model.encode_texts(false)
    return np.sum(image_emb * t, 1) > np.sum(image_emb * f, 1)


def run_skills(
    model,
    n: int = 500,
    seed: int = 2027,
    split: str = "test",
    image_size: int = 64,
    *,
    pretrained: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> SkillsResult:
    """Every skill on ``n`` fresh scenes per skill (seeded; use a seed never used in training)."""
    step = on_step or (lambda text: None)
    rows: list[SkillRow] = []

    step(f"binding and spatial: {n} two-object scenes")
    pairs = synthetic.generate(n, seed=seed, image_size=image_size, split=split, max_objects=2, min_objects=2)
    pairs = [r for r in pairs if len(r.spec.objects) == 2]
    emb = model.encode_images([r.image for r in pairs])
    for attribute in BINDING_ATTRIBUTES:
        twins = [(i, swap_attribute(r.spec, attribute)) for i, r in enumerate(pairs)]
        twins = [(i, t) for i, t in twins if t is not None]
        idx = [i for i, _ in twins]
        wins = _pair_wins(model, emb[idx], [pairs[i].caption for i in idx], [synthetic.full_caption(t) for _, t in twins])
        rows.append(SkillRow("binding", attribute, len(idx), float(wins.mean()), 0.5))
    for axis in ("left/right", "above/below"):
        cases = [(i, c) for i, r in enumerate(pairs) for c in relation_captions(r.spec) if c[0] == axis]
        wins = _pair_wins(model, emb[[i for i, _ in cases]], [c[1] for _, c in cases], [c[2] for _, c in cases])
        rows.append(SkillRow("spatial", axis, len(cases), float(wins.mean()), 0.5))
    twins = [(i, swap_attribute(r.spec, "position")) for i, r in enumerate(pairs)]
    twins = [(i, t) for i, t in twins if t is not None]
    idx = [i for i, _ in twins]
    wins = _pair_wins(model, emb[idx], [pairs[i].caption for i in idx], [synthetic.full_caption(t) for _, t in twins])
    rows.append(SkillRow("spatial_absolute", "positions swapped", len(idx), float(wins.mean()), 0.5))

    step(f"counting: {n} scenes of 1-4 objects")
    scenes = synthetic.generate(n, seed=seed + 1, image_size=image_size, split=split, max_objects=4, min_objects=1)
    counts = np.array([len(r.spec.objects) for r in scenes])
    prompts = model.encode_texts([count_prompt(k) for k in range(1, 5)])
    predicted = (model.encode_images([r.image for r in scenes]) @ prompts.T).argmax(1) + 1
    for k in range(1, 5):
        if (counts == k).any():
            rows.append(SkillRow("counting", f"{k} object{'s' if k > 1 else ''}", int((counts == k).sum()), float(np.mean(predicted[counts == k] == k)), 0.25))
    rows.append(SkillRow("counting", "all", len(counts), float(np.mean(predicted == counts)), 0.25))

    step(f"long captions: {n} scenes of 3-4 objects")
    crowded = synthetic.generate(n, seed=seed + 2, image_size=image_size, split=split, max_objects=4, min_objects=3)
    recall = retrieval_metrics(
        model.encode_images([r.image for r in crowded]), model.encode_texts([r.caption for r in crowded]), np.arange(len(crowded)), ks=(1,)
    )["image_retrieval_recall@1"]
    rows.append(SkillRow("long_caption_retrieval", f"text to image R@1 among {len(crowded)}", len(crowded), recall, 1 / len(crowded)))

    def skill_mean(skill: str, variants: tuple[str, ...] | None = None) -> float:
        chosen = [r for r in rows if r.skill == skill and (variants is None or r.variant in variants)]
        return float(np.average([r.accuracy for r in chosen], weights=[r.n for r in chosen]))

    metrics = {
        "binding": skill_mean("binding"),
        "spatial": skill_mean("spatial"),
        "spatial_absolute": skill_mean("spatial_absolute"),
        "counting": skill_mean("counting", ("all",)),
        "long_caption_retrieval": recall,
    }
    return SkillsResult(**header(model, f"synthetic scenes ({split}, seed {seed})", "skills", pretrained), metrics=metrics, rows=rows, split=split, seed=seed)


def report(result: SkillsResult) -> Report:
    rep = Report(f"Compositional skills: {result.model}", f"synthetic scenes, split {result.split}, seed {result.seed}")
    rep.add_table("Skills", result.metrics)
    rep.add_table("Per skill", [vars(r) for r in result.rows], caption="accuracy of choosing the true caption; chance for comparison")
    bars = {f"{r.skill}: {r.variant}": r.accuracy for r in result.rows}
    rep.add_figure("Accuracy per skill", plots.per_class_bars_png(bars, title="Accuracy per skill", xlabel="accuracy"))
    return rep
