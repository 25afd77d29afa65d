"""Modality gap, separability, alignment, uniformity, centring: closed forms and properties."""

from __future__ import annotations

import numpy as np
import pytest

from cliplab.evaluate.representation import (
    alignment,
    centre_modalities,
    geometry,
    modality_gap,
    modality_separability,
    uniformity,
)


def test_gap_and_alignment_by_hand():
    img = np.array([[1.0, 0.0], [1.0, 0.0]])
    txt = np.array([[0.0, 3.0], [0.0, 1.0]])  # normalised to (0, 1)
    assert modality_gap(img, txt) == pytest.approx(np.sqrt(2))
    assert alignment(img, txt) == pytest.approx(2.0)  # ||(1,0) - (0,1)||^2
    assert alignment(img, img) == 0.0


def test_uniformity_closed_form_and_order():
    # two antipodal points: ||a - b||^2 = 4 -> log exp(-8) = -8
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(200, 16))
    clumped = np.ones((200, 16)) + 0.05 * rng.normal(size=(200, 16))
    assert uniformity(spread) < uniformity(clumped)


def test_separability_sees_a_gap_and_not_its_absence():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(100, 8))
    shift = np.zeros(8)
    shift[0] = 4.0
    assert modality_separability(base, base + shift) > 0.9
    assert modality_separability(base[:50], base[50:]) < 0.7


def test_centring_removes_the_gap_keeps_pairs():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(80, 8))
    shift = np.r_[3.0, np.zeros(7)]
    img, txt = base + shift, base - shift + 0.1 * rng.normal(size=(80, 8))
    ci, ct = centre_modalities(img, txt)
    assert modality_gap(ci, ct) < 0.1 * modality_gap(img, txt)
    assert alignment(ci, ct) < alignment(img, txt)
    assert np.allclose(np.linalg.norm(ci, axis=1), 1.0)
    assert set(geometry(img, txt)) >= {"modality_gap", "alignment", "uniformity_image", "uniformity_text"}


def test_centred_separability_of_one_distribution_is_chance():
    """Centring runs inside each fold: two samples of one distribution are inseparable (0.5), where
    centring the whole set before cross-validation scored them far below chance (about 0.2)."""
    rng = np.random.default_rng(3)
    scores = [modality_separability(rng.normal(size=(60, 16)), rng.normal(size=(60, 16)), seed=s, centred=True) for s in range(8)]
    assert np.mean(scores) == pytest.approx(0.5, abs=0.04)
    gapped = rng.normal(size=(60, 16))
    assert modality_separability(gapped, gapped[::-1] + np.r_[4.0, np.zeros(15)]) > 0.9  # raw: the gap separates
    assert modality_separability(gapped, gapped[::-1] + np.r_[4.0, np.zeros(15)], centred=True) < 0.65  # centred: it is gone
