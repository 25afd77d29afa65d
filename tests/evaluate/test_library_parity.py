"""Parity with the well-kept libraries that compute the same metrics (skipped when one is absent):
torchmetrics (CLIPScore, calibration error), fairlearn (MetricFrame, equalized odds, demographic
parity), netcal (ECE, temperature scaling)."""

from __future__ import annotations

import numpy as np
import pytest

from cliplab.evaluate.calibration import ece, fit_temperature, mce, softmax
from cliplab.evaluate.fairness import demographic_parity_difference, equalized_odds_difference, group_stats
from cliplab.evaluate.generation import clip_score


def _calibration_case(seed: int = 0, n: int = 600, c: int = 5):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2.5
    y = np.array([rng.choice(c, p=row) for row in softmax(z / 1.7)])
    return z, softmax(z), y


def test_calibration_error_matches_torchmetrics():
    torch = pytest.importorskip("torch")
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    z, p, y = _calibration_case()
    for n_bins in (5, 15):
        for norm, ours in (("l1", ece), ("max", mce)):
            theirs = tmf.multiclass_calibration_error(torch.tensor(p, dtype=torch.float64), torch.tensor(y), num_classes=5, n_bins=n_bins, norm=norm)
            assert ours(p, y, n_bins) == pytest.approx(float(theirs), abs=1e-6)


class _FixedFeatures(dict):
    """Stands in for a transformers CLIP model: returns fixed features for torchmetrics' calls."""

    def __init__(self, torch, img, txt):
        super().__init__()
        self.img, self.txt = torch.tensor(img), torch.tensor(txt)

    def to(self, device):
        return self

    def get_image_features(self, pixel_values):
        return self.img

    def get_text_features(self, input_ids, attention_mask=None):
        return self.txt


def _processor(text=None, images=None, **kw):
    import torch

    if images is not None:
        return {"pixel_values": torch.zeros(len(images), 3, 2, 2)}
    return {"input_ids": torch.zeros(len(text), 4, dtype=torch.long), "attention_mask": torch.ones(len(text), 4, dtype=torch.long)}


@pytest.mark.parametrize("shift", [0.0, -0.4])
def test_clip_score_matches_torchmetrics(monkeypatch, shift):
    torch = pytest.importorskip("torch")
    mod = pytest.importorskip("torchmetrics.functional.multimodal.clip_score")
    rng = np.random.default_rng(1)
    img = rng.normal(size=(6, 8)).astype(np.float32)
    txt = (img + rng.normal(size=(6, 8)) + shift * img * 4).astype(np.float32)
    model = _FixedFeatures(torch, img, txt)
    model.config = type("Cfg", (), {})()
    monkeypatch.setattr(mod, "_get_clip_model_and_processor", lambda *a, **k: (model, _processor))
    images = [torch.zeros(3, 4, 4) for _ in range(6)]
    theirs = float(mod.clip_score(images, ["a caption"] * 6, "stand-in"))
    assert clip_score(img, txt, w=100, clamp="mean") == pytest.approx(theirs, rel=1e-5)
    cos = np.sum(img * txt, 1) / np.linalg.norm(img, axis=1) / np.linalg.norm(txt, axis=1)
    if (cos > 0).all():  # no pair below zero: Hessel's per-pair clamp gives the same value
        assert clip_score(img, txt, w=100) == pytest.approx(theirs, rel=1e-5)


def _fair_case(seed: int = 2):
    rng = np.random.default_rng(seed)
    g = rng.choice(["f", "m", "x"], size=400)
    y = rng.integers(0, 2, 400)
    p = np.where(rng.random(400) < np.where(g == "f", 0.9, 0.7), y, 1 - y)
    return y, p, g


def test_fairness_matches_fairlearn():
    fm = pytest.importorskip("fairlearn.metrics")
    from sklearn.metrics import accuracy_score

    y, p, g = _fair_case()
    assert equalized_odds_difference(y, p, g) == pytest.approx(fm.equalized_odds_difference(y, p, sensitive_features=g))
    assert demographic_parity_difference(y, p, g) == pytest.approx(fm.demographic_parity_difference(y, p, sensitive_features=g))
    frame = fm.MetricFrame(metrics={"acc": accuracy_score, "tpr": fm.true_positive_rate, "fpr": fm.false_positive_rate}, y_true=y, y_pred=p, sensitive_features=g)
    for stats in group_stats(y, p, g, ["neg", "pos"], n_boot=10):
        row = frame.by_group.loc[stats.group]
        assert stats.acc1.value == pytest.approx(row["acc"])
        assert stats.tpr["pos"].value == pytest.approx(row["tpr"])
        assert stats.fpr["pos"].value == pytest.approx(row["fpr"])
    # multi-class: the worst one-vs-rest binarisation
    rng = np.random.default_rng(3)
    y3, p3 = rng.integers(0, 3, 400), rng.integers(0, 3, 400)
    worst = max(fm.equalized_odds_difference(y3 == c, p3 == c, sensitive_features=g) for c in range(3))
    assert equalized_odds_difference(y3, p3, g) == pytest.approx(worst)


def test_calibration_matches_netcal():
    pytest.importorskip("netcal")
    from netcal.metrics import ECE
    from netcal.scaling import TemperatureScaling

    z, p, y = _calibration_case(seed=4, n=2000)
    assert ece(p, y, 15) == pytest.approx(float(ECE(15).measure(p, y)), abs=1e-9)
    ts = TemperatureScaling()
    ts.fit(p, y)
    # netcal stores the factor that multiplies the log-probabilities: 1 / T
    assert fit_temperature(z, y) == pytest.approx(1.0 / float(np.ravel(ts.temperature)[0]), rel=0.02)


def _on_edge_case():
    """Confidences exactly on the edges 0.5 and 0.75 of four equal-width bins (edges exact in binary)."""
    p = np.array([[0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.5, 0.5], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]])
    y = np.array([0, 1, 0, 0, 1, 0, 1, 1])  # (lower, upper] bins would give ECE 0.2375, [lower, upper) 0.1125
    return p, y


def test_calibration_bins_on_an_edge_match_torchmetrics():
    """A confidence on an edge belongs to the bin above it ([lower, upper)), as torch.bucketize(right=True)
    places it in torchmetrics' calibration_error."""
    torch = pytest.importorskip("torch")
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    p, y = _on_edge_case()
    for norm, ours in (("l1", ece), ("max", mce)):
        theirs = tmf.multiclass_calibration_error(torch.tensor(p), torch.tensor(y), num_classes=2, n_bins=4, norm=norm)
        assert ours(p, y, 4) == pytest.approx(float(theirs), abs=1e-6)


def test_calibration_bins_on_an_edge_match_netcal():
    """netcal bins with np.histogramdd: [lower, upper), the last bin closed, so a confidence of 1 is in it."""
    pytest.importorskip("netcal")
    from netcal.metrics import ECE

    p, y = _on_edge_case()
    p, y = np.vstack([p, [[1.0, 0.0], [0.0, 1.0]]]), np.r_[y, 0, 0]
    p = np.vstack([np.c_[p, np.zeros(len(p))], [0.1, 0.2, 0.7]])  # netcal reads two classes as a binary problem
    y = np.r_[y, 2]
    assert ece(p, y, 4) == pytest.approx(float(ECE(4).measure(p, y)), abs=1e-9)
