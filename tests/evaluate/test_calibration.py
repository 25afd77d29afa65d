"""Calibration metrics: hand-computed cases, invariants, and temperature scaling's optimum."""

from __future__ import annotations

import numpy as np
import pytest

from cliplab.errors import InputError
from cliplab.evaluate.calibration import (
    brier,
    calibration_metrics,
    ece,
    ece_equal_mass,
    fit_temperature,
    mce,
    nll,
    reliability_bins,
    softmax,
)

# Four samples, two classes: confidences 0.9, 0.8, 0.6, 0.6; correct, wrong, correct, correct.
P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]])
Y = np.array([0, 0, 0, 1])


def test_ece_by_hand_two_bins():
    # bins (0, .5], (.5, 1]: all four land in the upper one: acc 3/4, conf (0.9+0.8+0.6+0.6)/4 = 0.725
    assert ece(P, Y, n_bins=2) == pytest.approx(abs(0.75 - 0.725))
    # ten bins: (.5,.6] holds 2 (acc 1, conf .6), (.7,.8] 1 (acc 0, conf .8), (.8,.9] 1 (acc 1, conf .9)
    assert ece(P, Y, n_bins=10) == pytest.approx(0.5 * 0.4 + 0.25 * 0.8 + 0.25 * 0.1)
    assert mce(P, Y, n_bins=10) == pytest.approx(0.8)


def test_bins_are_lower_closed_upper_open_and_the_last_closed():
    probs = np.array([[0.5, 0.5], [0.7, 0.3], [0.75, 0.25], [1.0, 0.0]])
    bins = reliability_bins(probs, np.array([0, 0, 0, 0]), n_bins=4)
    assert bins.counts.tolist() == [0, 0, 2, 2]  # 0.5 -> [0.5, 0.75), 0.75 -> [0.75, 1], 1 -> [0.75, 1]


def test_equal_mass_bins_hold_equal_counts():
    rng = np.random.default_rng(0)
    p = softmax(rng.normal(size=(100, 3)))
    y = rng.integers(0, 3, 100)
    bins = reliability_bins(p, y, n_bins=4, strategy="quantile")
    assert bins.counts.tolist() == [25, 25, 25, 25]
    # two equal-mass bins by hand on P: sorted conf .6,.6 | .8,.9 -> |1 - .6|/2 + |.5 - .85|/2
    assert ece_equal_mass(P, Y, n_bins=2) == pytest.approx(0.5 * 0.4 + 0.5 * 0.35)


def test_brier_and_nll_by_hand():
    assert brier(P, Y) == pytest.approx(np.mean([0.02, 1.28, 0.32, 0.32]))
    assert nll(P, Y) == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.6, 0.6])))


def test_calibrated_predictor_has_ece_near_zero():
    rng = np.random.default_rng(1)
    p = softmax(rng.normal(size=(20000, 5)) * 2)
    y = np.array([rng.choice(5, p=row) for row in p])  # labels drawn from the predicted distribution
    assert ece(p, y) < 0.02
    overconfident = softmax(np.log(p) * 3)
    assert ece(overconfident, y) > 0.1


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5000, 6)) * 3
    y = np.array([rng.choice(6, p=row) for row in softmax(z / 2.0)])
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.0, rel=0.1)
    # it is the NLL minimum: nudging it either way does not lower the NLL
    for other in (t * 0.9, t * 1.1):
        assert nll(softmax(z, t), y) < nll(softmax(z, other), y)
    assert calibration_metrics(softmax(z, t), y)["ece"] < calibration_metrics(softmax(z), y)["ece"]


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        ece(np.array([[2.0, -1.0]]), np.array([0]))  # not probabilities
    with pytest.raises(InputError):
        ece(P, np.array([0, 0, 0, 2]))
    with pytest.raises(InputError):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
