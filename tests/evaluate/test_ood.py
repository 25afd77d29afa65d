"""OOD scores and detection metrics: hand-computed cases, invariants, sklearn parity."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from cliplab.errors import InputError
from cliplab.evaluate.ood import aupr, auroc, detection_metrics, energy, fpr_at_tpr, max_logit, mcm, msp, ood_scores


def test_scores_by_hand():
    z = np.array([[2.0, 0.0], [1.0, 1.0]])
    assert msp(z) == pytest.approx([np.exp(2) / (np.exp(2) + 1), 0.5])
    assert max_logit(z) == pytest.approx([2.0, 1.0])
    assert energy(z) == pytest.approx([np.log(np.exp(2) + 1), np.log(2 * np.e)])
    assert energy(z, temperature=2.0) == pytest.approx(2 * np.log(np.exp([1.0, 0.5]) + np.exp([0.0, 0.5])))
    cos = np.array([[0.3, 0.1, 0.2]])
    assert mcm(cos) == pytest.approx(np.exp(0.3) / np.exp(cos).sum())
    assert mcm(cos, 0.01) == pytest.approx(msp(cos * 100))


def test_auroc_aupr_fpr_by_hand():
    s_in, s_out = [0.9, 0.8, 0.4], [0.7, 0.4, 0.1]
    # pairs (in > out): 0.9 beats 3, 0.8 beats 3, 0.4 beats 1 and ties 1 -> (3 + 3 + 1 + 0.5) / 9
    assert auroc(s_in, s_out) == pytest.approx(7.5 / 9)
    # thresholds .9 (P 1, R 1/3), .8 (P 1, R 2/3), .7 (P 2/3, R 2/3), .4 (P 3/5, R 1)
    assert aupr(s_in, s_out) == pytest.approx(1 / 3 + 1 / 3 + (1 / 3) * 0.6)
    # keeping >= 2/3 of in-distribution needs threshold 0.8: no OOD score is >= 0.8
    assert fpr_at_tpr(s_in, s_out, tpr=0.6) == 0.0
    # 95% needs all three: threshold 0.4, OOD 0.7 and 0.4 pass
    assert fpr_at_tpr(s_in, s_out, tpr=0.95) == pytest.approx(2 / 3)


def test_identical_distributions_give_chance():
    rng = np.random.default_rng(0)
    same = rng.normal(size=4000)
    assert auroc(same, same) == pytest.approx(0.5)
    a, b = rng.normal(size=20000), rng.normal(size=20000)
    assert auroc(a, b) == pytest.approx(0.5, abs=0.01)
    assert fpr_at_tpr(a, b) == pytest.approx(0.95, abs=0.01)


def test_separated_distributions_are_perfect():
    m = detection_metrics([5.0, 6.0, 7.0], [0.0, 1.0], prefix="x_")
    assert m == {"x_auroc": 1.0, "x_aupr": 1.0, "x_fpr95": 0.0}


def test_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, size=300).astype(float)
    b = rng.integers(0, 5, size=200).astype(float)
    y = np.r_[np.ones(300), np.zeros(200)]
    s = np.r_[a, b]
    assert auroc(a, b) == pytest.approx(roc_auc_score(y, s))
    assert aupr(a, b) == pytest.approx(average_precision_score(y, s))


def test_ood_scores_names():
    cos = np.array([[0.3, 0.1], [0.2, 0.2]])
    scores = ood_scores(cos, logit_scale=10.0)
    assert set(scores) == {"msp", "maxlogit", "energy", "mcm"}
    assert scores["msp"] == pytest.approx(msp(10 * cos))


def test_fpr_conventions_by_hand():
    """ROC points from the top: (0, 1/4) at 5, (1/4, 1/4) at 4, (1/2, 1/2) at 3, (3/4, 3/4) at 2, (3/4, 1) at 1.
    At TPR 1/2 the rank convention takes threshold 3 (OOD 4 and 3 pass: 1/2); roc_curve drops (1/2, 1/2),
    collinear with its neighbours, so the benchmarks' convention lands on (3/4, 3/4)."""
    s_in, s_out = [5.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 0.0]
    assert fpr_at_tpr(s_in, s_out, tpr=0.5, convention="rank") == 0.5
    assert fpr_at_tpr(s_in, s_out, tpr=0.5, convention="roc") == 0.75
    assert fpr_at_tpr(s_in, s_out, tpr=0.5) == 0.75
    assert detection_metrics(s_in, s_out)["fpr95"] == fpr_at_tpr(s_in, s_out, convention="roc") == 0.75
    with pytest.raises(InputError, match="convention"):
        fpr_at_tpr(s_in, s_out, convention="nearest")


def test_fpr_roc_convention_matches_sklearn_roc_curve():
    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = rng.integers(0, 8, 25).astype(float), rng.integers(0, 8, 16) - 1.0
        fpr, tpr, _ = roc_curve(np.r_[np.ones(25), np.zeros(16)], np.r_[a, b])
        assert fpr_at_tpr(a, b) == fpr[np.argmax(tpr >= 0.95)]
