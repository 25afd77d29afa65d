"""Subgroup metrics: hand-computed rates, bootstrap intervals, group predictability."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cliplab.errors import InputError
from cliplab.evaluate.fairness import (
    demographic_parity_difference,
    equalized_odds_difference,
    group_auroc,
    group_predictability,
    group_stats,
    max_gap,
)

Y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
P = np.array([1, 0, 0, 0, 1, 1, 1, 0])
G = np.array(["a"] * 4 + ["b"] * 4)


def test_binary_differences_by_hand():
    # a: TPR 1/2, FPR 0, selection 1/4;  b: TPR 1, FPR 1/2, selection 3/4
    assert equalized_odds_difference(Y, P, G) == pytest.approx(0.5)
    assert demographic_parity_difference(Y, P, G) == pytest.approx(0.5)
    assert equalized_odds_difference(Y, Y, G) == 0.0


def test_multiclass_is_the_worst_one_vs_rest():
    y = np.array([0, 1, 2, 0, 1, 2])
    p = np.array([0, 1, 2, 1, 1, 2])
    g = np.array(["a", "a", "a", "b", "b", "b"])
    # class 0: TPR a=1, b=0 -> 1;  class 1: FPR a=0, b=1/2; TPR both 1 -> 0.5
    assert equalized_odds_difference(y, p, g) == pytest.approx(1.0)
    # selection rates: class 0 a=1/3 b=0, class 1 a=1/3 b=2/3 -> 1/3
    assert demographic_parity_difference(y, p, g) == pytest.approx(1 / 3)


def test_group_stats_values_and_intervals():
    stats = group_stats(Y, P, G, ["neg", "pos"], n_boot=500, seed=0)
    a, b = stats
    assert (a.group, a.n, b.n) == ("a", 4, 4)
    assert a.acc1.value == pytest.approx(0.75) and b.acc1.value == pytest.approx(0.75)
    assert a.tpr["pos"].value == pytest.approx(0.5) and b.fpr["pos"].value == pytest.approx(0.5)
    for s in stats:
        assert s.acc1.low <= s.acc1.value <= s.acc1.high
    assert group_stats(Y, P, G, ["neg", "pos"], n_boot=500, seed=0)[0].acc1.low == a.acc1.low  # seeded
    assert max_gap({"a": 0.9, "b": 0.6, "c": 0.7}) == pytest.approx(0.3)
    assert set(a.to_json()) == {"group", "n", "acc1", "tpr", "fpr"}


def test_bootstrap_interval_has_the_normal_width():
    rng = np.random.default_rng(3)
    y = np.zeros(2000, int)
    p = (rng.random(2000) < 0.2).astype(int)  # accuracy about 0.8
    (s,) = group_stats(y, p, np.zeros(2000, int), ["x", "y"], n_boot=1000)
    acc = s.acc1.value
    assert s.acc1.low < acc < s.acc1.high
    # a binomial proportion's 95% interval is about 2 * 1.96 * sqrt(p (1 - p) / n) wide
    assert s.acc1.high - s.acc1.low == pytest.approx(2 * 1.96 * np.sqrt(acc * (1 - acc) / 2000), rel=0.15)
    assert np.isnan(s.fpr["x"].value)  # no negatives of class x: the rate is undefined


def test_group_predictability():
    rng = np.random.default_rng(4)
    g = np.repeat([0, 1, 2], 40)
    encoded = rng.normal(size=(120, 6)) + 3.0 * np.eye(6)[g]
    assert group_predictability(encoded, g) > 0.9
    assert group_predictability(rng.normal(size=(120, 6)), g) < 0.6


def test_group_auroc_multiclass_is_sklearn_one_vs_rest_per_group():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y, g = rng.integers(0, 3, 120), rng.choice(["f", "m"], 120)
    scores = rng.normal(size=(120, 3)) + 1.5 * (y[:, None] == np.arange(3))
    got = group_auroc(y, scores, g, ["a", "b", "c"])
    assert list(got) == ["f", "m"]
    for k in ("f", "m"):
        per = [roc_auc_score(y[g == k] == c, scores[g == k, c]) for c in range(3)]
        assert [got[k][n] for n in "abc"] == pytest.approx(per)
        assert got[k]["macro"] == pytest.approx(np.mean(per))


def test_group_auroc_multilabel_per_label_per_group():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(6)
    labels = rng.random((80, 2)) < 0.4  # a sample may carry both labels, or none
    g = np.repeat(["x", "y"], 40)
    scores = rng.normal(size=(80, 2)) + labels
    labels[g == "y", 1] = False  # label 1 never occurs in group y: no AUROC there
    got = group_auroc(labels.astype(int), scores, g, ["edema", "effusion"])
    assert got["x"]["edema"] == pytest.approx(roc_auc_score(labels[:40, 0], scores[:40, 0]))
    assert got["x"]["effusion"] == pytest.approx(roc_auc_score(labels[:40, 1], scores[:40, 1]))
    assert np.isnan(got["y"]["effusion"])
    assert got["y"]["macro"] == got["y"]["edema"] == pytest.approx(roc_auc_score(labels[40:, 0], scores[40:, 0]))
    with pytest.raises(InputError, match="0/1 label matrix"):
        group_auroc(np.full((80, 2), 2), scores, g, ["edema", "effusion"])


def test_fairness_task_reports_per_group_auroc(tiny_model):
    """The task's per-group AUROC is sklearn's one-vs-rest AUROC of the softmax probabilities per group."""
    from sklearn.metrics import roc_auc_score

    from cliplab.evaluate.calibration import softmax
    from cliplab.evaluate.tasks import EmbedOptions, fairness
    from cliplab.evaluate.tasks.base import open_images, zeroshot

    opts = EmbedOptions(batch_size=16, num_workers=0)
    res = fairness.run_fairness(tiny_model, "synthetic:30:6", ["background"], opts=opts, n_boot=10)
    run = zeroshot(tiny_model, open_images("synthetic:30:6", None, labelled=True)[0], opts)
    probs, bg = softmax(run.logits), np.array([it.meta["background"] for it in run.items])
    (col,) = res.columns
    macros = []
    for k, per in col.auroc.items():
        y, p = run.y[bg == k], probs[bg == k]
        want = {c: roc_auc_score(y == i, p[:, i]) for i, c in enumerate(run.classes) if 0 < (y == i).sum() < len(y)}
        assert {c: per[c] for c in want} == pytest.approx(want)
        assert per["macro"] == pytest.approx(np.mean(list(want.values())))
        macros.append(per["macro"])
    assert res.metrics["macro_auroc_gap"] == pytest.approx(max(macros) - min(macros))
    assert "AUROC by background" in fairness.report(res).to_html()


def test_fairness_task_multilabel_is_per_label_auroc_per_group(tiny_model):
    """Scenes labelled by the set of their shapes ("heart|cross"), grouped by background: each group's
    AUROC per shape is sklearn's on the zero-shot logits of that group."""
    from dataclasses import replace

    from sklearn.metrics import roc_auc_score

    from cliplab.data.sources.base import ImageSource
    from cliplab.evaluate.runner import open_dataset
    from cliplab.evaluate.tasks import EmbedOptions, fairness
    from cliplab.zeroshot import ZeroShotClassifier

    scenes = open_dataset("synthetic:24:7")
    items = [replace(it, label="|".join(o["shape"] for o in it.meta["objects"])) for it in scenes.items]
    res = fairness.run_fairness(tiny_model, ImageSource("shapes", items), ["background"], opts=EmbedOptions(batch_size=16, num_workers=0), multilabel=True)
    classes, labels = fairness.label_sets(items)
    assert res.classes == classes and labels.sum() > len(items)  # some scenes carry two labels
    logits = ZeroShotClassifier(tiny_model, classes, "default").fit().decision_function(tiny_model.encode_images(
        [Image.open(io.BytesIO(it.read_bytes())).convert("RGB") for it in items]))  # fmt: skip
    bg = np.array([it.meta["background"] for it in items])
    (col,) = res.columns
    checked = 0
    for k, per in col.auroc.items():
        for i, c in enumerate(classes):
            y = labels[bg == k, i]
            if 0 < y.sum() < len(y):
                assert per[c] == pytest.approx(roc_auc_score(y, logits[bg == k, i]), abs=1e-6)
                checked += 1
            else:
                assert np.isnan(per[c])
    assert checked >= 4
    assert set(res.metrics) == {"macro_auroc_gap", "group_predictability", "group_predictability_chance"}
    assert "AUROC by background" in fairness.report(res).to_html()
    with pytest.raises(InputError, match="not among the class names"):
        fairness.label_sets(items, ["heart"])
