import math

import numpy as np
import pytest
import torch

from cliplab.adapt import GaussianOneClass, HypOneClass, KNNOneClass, one_class_metrics
from cliplab.adapt.oneclass import mobius_add, poincare_distance


def test_poincare_distance_is_artanh_not_arctan():
    c = 0.1
    x = torch.zeros(1, 3)
    y = torch.tensor([[2.0, 0.0, 0.0]])  # sqrt(c) * |y| = 0.632 < 1
    expected = 2 / math.sqrt(c) * math.atanh(math.sqrt(c) * 2.0 / (1 + 1e-5))
    assert poincare_distance(x, y, c).item() == pytest.approx(expected, rel=1e-5)
    assert poincare_distance(x, y, c).item() != pytest.approx(2 / math.sqrt(c) * math.atan(math.sqrt(c) * 2.0), rel=1e-3)
    # symmetric, zero on the diagonal
    z = torch.tensor([[0.5, -1.0, 0.3]])
    assert poincare_distance(y, z, c).item() == pytest.approx(poincare_distance(z, y, c).item(), rel=1e-4)
    assert poincare_distance(z, z, c).item() == pytest.approx(0.0, abs=1e-3)
    assert torch.allclose(mobius_add(torch.zeros(1, 3), z, c), z / (1 + 1e-5))


def test_metrics_hand_computed():
    scores = [0.1, 0.2, 0.3, 0.4, 0.35, 0.9]
    anomaly = [0, 0, 0, 1, 0, 1]
    m = one_class_metrics(scores, anomaly)
    assert m["auroc"] == pytest.approx(1.0)
    assert m["aupr"] == pytest.approx(1.0)
    assert m["fpr_at_95_tpr"] == 0.0
    m = one_class_metrics([0.9, 0.1, 0.5, 0.4], [0, 1, 1, 0])  # one good scored above every anomaly
    assert m["auroc"] == pytest.approx(0.25)
    assert m["fpr_at_95_tpr"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def inspection():
    rng = np.random.default_rng(2)
    good = rng.normal(size=(300, 16)) + 3
    bad = rng.normal(size=(100, 16)) + 3
    bad[:, :3] += 4.0
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(good[:150]), unit(np.concatenate([good[150:], bad])), np.r_[np.zeros(150), np.ones(100)]


@pytest.mark.parametrize("detector", [KNNOneClass(k=5), GaussianOneClass(), HypOneClass(epochs=15)])
def test_detectors_find_shifted_anomalies(inspection, detector):
    train, test, is_anomaly = inspection
    detector.fit(train)
    metrics = one_class_metrics(detector.anomaly_score(test), is_anomaly)
    assert metrics["auroc"] > 0.85, metrics
    flagged = detector.predict(test[:150]) == -1  # good test rows flagged ~ fpr of the training rows
    assert flagged.mean() < 0.25
