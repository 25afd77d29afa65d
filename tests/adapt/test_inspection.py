"""One-class inspection in Python: the held-out threshold, the detector folder, the model check, the metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cliplab.adapt.inspection import (
    Detector,
    anomaly_truth,
    build_detector,
    fit_detector,
    inspection_metrics,
    threshold_at,
)
from cliplab.errors import InputError


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def good():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    return unit(centre + 0.4 * rng.normal(size=(300, 16))), unit(rng.normal(size=(60, 16))), centre


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300, unique=True),
       st.floats(0.001, 0.999))  # fmt: skip
def test_threshold_flags_the_target_share_of_distinct_scores(scores, rate):
    """Rate r on n distinct scores: exactly floor(r n) flagged, so the false-alarm rate is <= r and > r - 1/n."""
    t = threshold_at(scores, rate)
    flagged = int((np.asarray(scores) > t).sum())
    assert flagged == math.floor(rate * len(scores) + 1e-9)
    assert flagged / len(scores) <= rate + 1e-12
    assert flagged / len(scores) > rate - 1 / len(scores)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=100), st.floats(0.01, 0.99))
def test_threshold_never_flags_more_than_the_target_when_scores_tie(scores, rate):
    flagged = (np.asarray(scores, float) > threshold_at(scores, rate)).mean()
    assert flagged <= rate + 1e-12


@pytest.mark.parametrize("method", ["knn", "gaussian", "hypoc"])
@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_fitted_detector_flags_the_target_share_of_its_held_out_good_images(good, method, rate):
    X, _, _ = good
    params = {"epochs": 3} if method == "hypoc" else None
    det = fit_detector(X, method, rate, held_out=0.25, params=params, random_state=1)
    n_held = round(0.25 * len(X))
    assert det.n_held_out == n_held and det.n_fit == len(X) - n_held
    assert det.held_out_false_alarm == pytest.approx(math.floor(rate * n_held) / n_held)
    held = X[det.held_out_rows]
    assert (det.anomaly_score(held) > det.threshold).mean() == pytest.approx(det.held_out_false_alarm)
    # the held-out rows were not fitted on: knn's memory lacks them
    if method == "knn":
        assert len(det.head.memory_) == det.n_fit


def test_separate_held_out_images_set_the_threshold_and_all_good_images_are_fitted(good):
    X, _, _ = good
    det = fit_detector(X[:200], "knn", 0.1, X_held_out=X[200:])
    assert det.n_fit == 200 and det.n_held_out == 100 and det.held_out_rows is None
    assert det.flag(X[200:]).mean() == pytest.approx(0.1)


def test_detector_separates_far_away_embeddings(good):
    X, far, _ = good
    det = fit_detector(X, "gaussian", 0.05)
    scores = det.anomaly_score(np.concatenate([X[det.held_out_rows], far]))
    truth = np.r_[np.zeros(det.n_held_out, bool), np.ones(len(far), bool)]
    assert inspection_metrics(scores, truth, det.threshold)["auroc"] > 0.95


class FakeModel:
    def __init__(self, identity="m|sha256=1", name="m", precision="fp32"):
        self.identity, self.name, self.precision, self.embed_dim = identity, name, precision, 16


def test_detector_folder_round_trip_scores_identically(good, tmp_path):
    from cliplab.adapt.inspection import record_model

    X, far, _ = good
    for method, params in (("knn", {"k": 3}), ("gaussian", None), ("hypoc", {"epochs": 2, "hidden": [8]})):
        det = fit_detector(X, method, 0.05, params=params, model=record_model(FakeModel(), "w.safetensors"), normal_labels=["good"])
        det.save(tmp_path / method)
        back = Detector.load(tmp_path / method)
        np.testing.assert_array_equal(back.anomaly_score(far), det.anomaly_score(far))
        assert (back.method, back.threshold, back.false_alarm, back.n_fit, back.n_held_out) == (
            det.method, det.threshold, det.false_alarm, det.n_fit, det.n_held_out)
        np.testing.assert_array_equal(back.held_out_scores, det.held_out_scores)
        info = json.loads((tmp_path / method / "detector.json").read_text())
        assert info["model"] == {"name": "m", "pretrained": "w.safetensors", "precision": "fp32", "identity": "m|sha256=1", "embed_dim": 16}
        assert info["normal_labels"] == ["good"] and info["false_alarm"] == 0.05
        if params:
            assert {k: info["params"][k] for k in params} == params
    with pytest.raises(InputError, match="not empty"):
        det.save(tmp_path / "hypoc")


def test_another_model_is_refused_with_the_one_it_was_fitted_on(good):
    from cliplab.adapt.inspection import record_model

    det = fit_detector(good[0], "knn", model=record_model(FakeModel(), "w.safetensors"))
    det.check_model(FakeModel())  # the same identity passes
    with pytest.raises(InputError, match=r"fitted on embeddings of m with weights w.safetensors at fp32, not of other at fp32.*load_model\('m'"):
        det.check_model(FakeModel("other|sha256=2", "other"))
    with pytest.raises(InputError, match="not of m at bf16"):
        det.check_model(FakeModel("m|sha256=1|bf16", precision="bf16"))


def test_bad_inputs_are_one_clear_error(good, tmp_path):
    X = good[0]
    with pytest.raises(InputError, match="unknown one-class method 'svm'"):
        build_detector("svm")
    with pytest.raises(InputError, match="knn has no parameter 'depth' to set; its parameters are: k "):
        build_detector("knn", {"depth": 3})
    with pytest.raises(InputError, match="false-alarm rate must be in"):
        fit_detector(X, "knn", 1.0)
    with pytest.raises(InputError, match="3 good image"):
        fit_detector(X[:3], "knn", held_out=0.5)
    with pytest.raises(InputError, match="The .k. parameter of KNNOneClass must be an int in the range"):
        fit_detector(X, "knn", params={"k": 0})
    with pytest.raises(InputError, match="not a detector folder"):
        Detector.load(tmp_path)
    with pytest.warns(UserWarning, match="10 held-out good images cannot measure a false-alarm rate of 0.05"):
        det = fit_detector(X[:50], "knn", 0.05, held_out=0.2)
    assert det.held_out_false_alarm == 0.0


def test_metrics_by_hand():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.4, 0.8, 0.25, 0.7])
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    kinds = ["good"] * 4 + ["scratch", "scratch", "dent", "dent"]
    m = inspection_metrics(scores, truth, 0.5, kinds=kinds)
    # flagged: 0.9 (good), 0.8, 0.7 -> BPCER 1/4; scratch passes 0.4 (1/2), dent passes 0.25 (1/2)
    assert m["bpcer"] == 0.25 and m["apcer"] == 0.5 and m["apcer_per_kind"] == {"dent": 0.5, "scratch": 0.5}
    assert m["acer"] == m["hter"] == 0.375
    assert m["auroc"] == pytest.approx(11 / 16) and (m["n_normal"], m["n_anomalous"]) == (4, 4)
    m = inspection_metrics(scores, truth, 0.5, kinds=["good"] * 4 + ["scratch", "scratch", "dent", "scratch"])
    # dent (0.25) always passes: ACER takes the worst kind, HTER all anomalies
    assert m["apcer_per_kind"] == {"dent": 1.0, "scratch": pytest.approx(1 / 3)}
    assert m["acer"] == pytest.approx((1.0 + 0.25) / 2) and m["hter"] == pytest.approx((0.5 + 0.25) / 2)


def test_anomaly_truth_from_labels():
    assert anomaly_truth([None, None], ["good"]) is None
    np.testing.assert_array_equal(anomaly_truth(["good", "crack", None, "ok"], ["good", "ok"]), [0, 1, -1, 0])
