"""MMVP-style pairs (Tong et al., "Eyes Wide Shut?", CVPR 2024; MMVP-VLM): two scenes that differ in one
small detail, each with its own statement; a pair counts only when *both* images are nearer their own
statement than the twin's.

The pairs are the synthetic scenes' edited twins (the ground truth is exact):
- ``color_swap``: a two-object scene and the same scene with its two objects' colours exchanged
  (``synthetic.swap_colours``): both captions name the same words, only who has which colour differs;
- ``color``, ``shape``, ``size``, ``position``: one attribute of one object changed
  (``synthetic.perturb_spec``), everything else (background, texture, other object) kept.

Per kind: ``pair_accuracy`` (MMVP-VLM's score: both images pick their own caption; chance 0.25),
``image_accuracy`` (each image alone), and the image-image separability of the twins: their mean
cosine, ``blind_rate`` (share of pairs the model embeds at cosine > 0.95, MMVP's "CLIP-blind" threshold)
and ``separation`` (twin distance over the mean distance between unrelated scenes of the same set, so a
model that only spreads every embedding apart gains nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cliplab.data import synthetic
from cliplab.data.synthetic import SceneSpec
from cliplab.errors import InputError
from cliplab.evaluate.report import Report
from cliplab.evaluate.tasks.base import TaskResult, header

KINDS: tuple[str, ...] = ("color_swap", "color", "shape", "size", "position")
CAPTIONS: tuple[str, ...] = ("full", "short")
BLIND_COSINE = 0.95  # MMVP's "CLIP-blind" pairs: CLIP cosine above 0.95 (Tong et al. 2024, Sec. 2)


@dataclass
class MMVPPairs:
    """The twin scenes of one kind: ``first[i]`` and ``second[i]`` differ in one detail."""

    kind: str
    first: list[SceneSpec]
    second: list[SceneSpec]

    def captions(self, which: str = "full") -> tuple[list[str], list[str]]:
        caption = {"full": synthetic.full_caption, "short": synthetic.short_caption}[which]
        return [caption(s) for s in self.first], [caption(s) for s in self.second]


def make_pairs(kind: str, n: int, seed: int = 2028, split: str = "test") -> MMVPPairs:
    """Up to ``n`` twin pairs of ``kind`` (see :data:`KINDS`) from scenes of ``(seed, split)``; scenes
    that have no such twin (one colour shared, an edit that would not fit) are passed over, and a
    pair whose short captions coincide is kept for the full captions only when ``kind`` needs it."""
    if kind not in KINDS:
        raise InputError(f"unknown MMVP pair kind {kind!r}; use one of {', '.join(KINDS)}")
    first: list[SceneSpec] = []
    second: list[SceneSpec] = []
    two = kind == "color_swap"
    for index in range(20 * n + 100):
        if len(first) == n:
            break
        rng = synthetic.scene_rng(seed, split, index)
        spec = synthetic.sample_spec(rng, split, max_objects=2, min_objects=2 if two else 1)
        twin = synthetic.swap_colours(spec, split) if two else synthetic.perturb_spec(spec, rng, split, attribute=kind)
        if twin is None or twin == spec or synthetic.full_caption(twin) == synthetic.full_caption(spec):
            continue
        first.append(spec)
        second.append(twin)
    return MMVPPairs(kind, first, second)


def pair_scores(img_a: np.ndarray, img_b: np.ndarray, txt_a: np.ndarray, txt_b: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair, from L2-normalised rows: ``a_right`` (image a nearer caption a than b), ``b_right``,
    ``pair`` (both; ties count as wrong) and the twins' image-image ``cosine``."""
    a_right = np.sum(img_a * txt_a, 1) > np.sum(img_a * txt_b, 1)
    b_right = np.sum(img_b * txt_b, 1) > np.sum(img_b * txt_a, 1)
    return {"a_right": a_right, "b_right": b_right, "pair": a_right & b_right, "cosine": np.sum(img_a * img_b, 1)}


def separation(img_a: np.ndarray, img_b: np.ndarray, cosine: np.ndarray) -> float:
    """Mean twin distance (1 - cos) over the mean distance between unrelated scenes of the set
    (every first image against every other pair's images)."""
    rows = np.concatenate([img_a, img_b])
    sims = img_a @ rows.T
    n = len(img_a)
    unrelated = np.ones_like(sims, dtype=bool)
    unrelated[np.arange(n), np.arange(n)] = False  # the image itself
    unrelated[np.arange(n), n + np.arange(n)] = False  # its twin
    return float(np.mean(1 - cosine) / max(np.mean(1 - sims[unrelated]), 1e-12))


@dataclass
class MMVPRow:
    kind: str
    captions: str
    n: int
    pair_accuracy: float
    image_accuracy: float
    twin_cosine: float
    blind_rate: float
    separation: float


@dataclass
class MMVPResult(TaskResult):
    rows: list[MMVPRow] = field(default_factory=list)
    split: str = "test"
    seed: int = 0


def run_mmvp(
    model,
    n: int = 300,
    seed: int = 2028,
    split: str = "test",
    image_size: int = 64,
    kinds: tuple[str, ...] = KINDS,
    *,
    pretrained: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> MMVPResult:
    """MMVP-style pair accuracy and twin separability of ``model`` on ``n`` twin pairs per kind (seeded;
    use a seed never used in training). ``metrics``: per kind, the full-caption ``pair_accuracy``,
    and ``separation``; ``rows``: every figure, full and short captions."""
    if n < 2:
        raise InputError(f"MMVP pairs: need at least 2 pairs per kind, got {n}")
    step = on_step or (lambda text: None)
    rows: list[MMVPRow] = []
    for kind in kinds:
        step(f"{kind}: {n} twin pairs")
        pairs = make_pairs(kind, n, seed, split)
        img_a = model.encode_images([synthetic.render(s, image_size).image for s in pairs.first])
        img_b = model.encode_images([synthetic.render(s, image_size).image for s in pairs.second])
        for which in CAPTIONS:
            cap_a, cap_b = pairs.captions(which)
            keep = np.array([a != b for a, b in zip(cap_a, cap_b)])  # short captions name no size or position
            if keep.sum() < 2:
                continue
            txt_a, txt_b = model.encode_texts([c for c, k in zip(cap_a, keep) if k]), model.encode_texts([c for c, k in zip(cap_b, keep) if k])
            s = pair_scores(img_a[keep], img_b[keep], txt_a, txt_b)
            rows.append(MMVPRow(kind, which, int(keep.sum()), float(s["pair"].mean()), float(np.concatenate([s["a_right"], s["b_right"]]).mean()),
                                float(s["cosine"].mean()), float(np.mean(s["cosine"] > BLIND_COSINE)),
                                separation(img_a[keep], img_b[keep], s["cosine"])))  # fmt: skip
    metrics = {r.kind: {"pair_accuracy": r.pair_accuracy, "separation": r.separation} for r in rows if r.captions == "full"}
    return MMVPResult(**header(model, f"synthetic twin pairs ({split}, seed {seed})", "mmvp", pretrained), metrics=metrics, rows=rows, split=split, seed=seed)


def report(result: MMVPResult) -> Report:
    rep = Report(f"MMVP-style pairs: {result.model}", f"synthetic twin scenes, split {result.split}, seed {result.seed}")
    rep.add_table("Pairs", [vars(r) for r in result.rows],
                  caption="pair accuracy: both images nearer their own caption (chance 0.25); blind rate: twins at cosine > 0.95; "
                          "separation: twin distance over the distance between unrelated scenes")  # fmt: skip
    return rep
