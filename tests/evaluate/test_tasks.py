"""Task runners: each result equals the metric functions applied to independently computed embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cliplab.data import synthetic
from cliplab.data.images import decode_image
from cliplab.evaluate import calibration as cal
from cliplab.evaluate.corruptions import corrupt
from cliplab.evaluate.generation import clip_score, cmmd, vendi_score
from cliplab.evaluate.ood import auroc, fpr_at_tpr, msp
from cliplab.evaluate.representation import geometry
from cliplab.evaluate.runner import open_dataset
from cliplab.evaluate.tasks import EmbedOptions
from cliplab.evaluate.tasks import calibration, diagnostics, fairness, generation, ood, robustness, skills
from cliplab.evaluate.tasks.robustness import corruption_errors
from cliplab.zeroshot import ZeroShotClassifier

FAST = EmbedOptions(batch_size=16, num_workers=0)


def _zeroshot(model, spec):
    source = open_dataset(spec, attribute="shape")
    images = [decode_image(it.read_bytes(), it.id) for it in source.items]
    X = model.encode_images(images)
    head = ZeroShotClassifier(model, list(synthetic.SHAPES), {c: [f"a photo of a {c}"] for c in synthetic.SHAPES}).fit()
    y = np.array([list(synthetic.SHAPES).index(it.label) for it in source.items])
    return source, images, X, head, y


@pytest.fixture(scope="module")
def noise_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_ood_matches_metrics(tiny_model, noise_folder):
    res = ood.run_ood(tiny_model, "synthetic:16:3", noise_folder, opts=FAST)
    _, _, X, head, _ = _zeroshot(tiny_model, "synthetic:16:3")
    out = tiny_model.encode_images([Image.open(p).convert("RGB") for p in sorted(noise_folder.iterdir(), key=lambda p: int(p.stem))])
    s_in, s_out = msp(head.decision_function(X)), msp(head.decision_function(out))
    assert res.metrics["msp_auroc"] == pytest.approx(auroc(s_in, s_out), abs=1e-6)
    assert res.metrics["msp_fpr95"] == pytest.approx(fpr_at_tpr(s_in, s_out), abs=1e-6)
    assert set(res.metrics) == {f"{s}_{m}" for s in ("msp", "maxlogit", "energy", "mcm") for m in ("auroc", "aupr", "fpr95")}
    assert (res.n_in, res.n_out) == (16, 10)
    assert json.dumps(res.to_json()) and "scores_in" not in res.to_json()
    assert "Score histograms" in ood.report(res).to_html()


def test_calibration_matches_metrics(tiny_model):
    res = calibration.run_calibration(tiny_model, "synthetic:24:4", opts=FAST, n_bins=10, seed=1)
    _, _, X, head, y = _zeroshot(tiny_model, "synthetic:24:4")
    logits = head.decision_function(X).astype(np.float64)
    val, test = calibration.split_indices(y, 0.5, 1)
    t = cal.fit_temperature(logits[val], y[val])
    assert res.metrics["temperature"] == pytest.approx(t, rel=1e-4)
    assert res.metrics["before"] == pytest.approx(cal.calibration_metrics(cal.softmax(logits[test]), y[test], 10), abs=1e-5)
    assert res.metrics["after"]["nll"] == pytest.approx(cal.nll(cal.softmax(logits[test], t), y[test]), abs=1e-5)
    assert res.n_val + res.n_test == 24 and not set(val) & set(test)
    assert "Reliability diagram" in calibration.report(res).to_html()


def test_robustness_matches_an_independent_loop(tiny_model):
    res = robustness.run_robustness(tiny_model, "synthetic:12:5", ["contrast", "gaussian_noise"], [1, 5], opts=FAST, seed=3)
    _, images, X, head, y = _zeroshot(tiny_model, "synthetic:12:5")
    assert res.metrics["clean_acc1"] == pytest.approx(np.mean(head.predict(X) == np.array(synthetic.SHAPES)[y]))
    shown = [corrupt(im, "contrast", 5, np.random.default_rng(0)) for im in images]  # contrast draws no randomness
    acc = np.mean(head.decision_function(tiny_model.encode_images(shown)).argmax(1) == y)
    assert res.metrics["corruptions"]["contrast"][5] == pytest.approx(acc)
    assert set(res.to_json()["metrics"]["corruptions"]["gaussian_noise"]) == {"1", "5"}
    again = robustness.run_robustness(tiny_model, "synthetic:12:5", ["gaussian_noise"], [5], opts=FAST, seed=3)
    assert again.metrics["corruptions"]["gaussian_noise"][5] == res.metrics["corruptions"]["gaussian_noise"][5]  # seeded
    assert "Accuracy per corruption and severity" in robustness.report(res).to_html()


def test_corruption_errors_by_hand():
    e = corruption_errors(0.9, {"a": {1: 0.8, 2: 0.6}, "b": {1: 0.9, 2: 0.9}})
    assert e["corruption_error"] == pytest.approx({"a": 0.3, "b": 0.1})
    assert e["relative_corruption_error"] == pytest.approx({"a": 0.2, "b": 0.0})
    assert e["mean_corruption_error"] == pytest.approx(0.2) and e["relative_mean_corruption_error"] == pytest.approx(0.1)


def test_fairness_groups_are_the_scene_backgrounds(tiny_model):
    res = fairness.run_fairness(tiny_model, "synthetic:30:6", ["background"], opts=FAST, n_boot=50)
    source, _, X, head, y = _zeroshot(tiny_model, "synthetic:30:6")
    pred = head.decision_function(X).argmax(1)
    bg = np.array([it.meta["background"] for it in source.items])
    (col,) = res.columns
    for g in col.groups:
        assert g.n == int((bg == g.group).sum())
        assert g.acc1.value == pytest.approx(np.mean(pred[bg == g.group] == y[bg == g.group]))
    assert res.metrics["max_gap"] == pytest.approx(max(g.acc1.value for g in col.groups) - min(g.acc1.value for g in col.groups))
    two = fairness.run_fairness(tiny_model, "synthetic:30:6", ["background", "size"], opts=FAST, n_boot=20)
    assert [c.column for c in two.columns] == ["background", "size", "background&size"]
    assert "Accuracy by background" in fairness.report(res).to_html()


def test_diagnostics_matches_geometry(tiny_model):
    res = diagnostics.run_diagnostics(tiny_model, "synthetic:12:2", FAST)
    source = open_dataset("synthetic:12:2")
    img = tiny_model.encode_images([decode_image(it.read_bytes(), it.id) for it in source.items])
    txt = tiny_model.encode_texts([it.captions[0] for it in source.items])
    expected = geometry(img, txt)
    assert {k: res.metrics["raw"][k] for k in expected} == pytest.approx(expected, abs=1e-4)
    assert res.metrics["centred"]["modality_gap"] < res.metrics["raw"]["modality_gap"]
    centred = geometry(img, txt, centred=True)  # separability centred inside each fold
    assert {k: res.metrics["centred"][k] for k in centred} == pytest.approx(centred, abs=1e-4)


def test_generation_matches_metrics(tiny_model, noise_folder, tmp_path):
    source = open_dataset("synthetic:10:2")
    img = tiny_model.encode_images([decode_image(it.read_bytes(), it.id) for it in source.items])
    captions = tmp_path / "caps.txt"
    captions.write_text("\n".join(f"a picture number {i}" for i in range(10)))
    res = generation.run_generation(tiny_model, "synthetic:10:2", captions, noise_folder, FAST)
    txt = tiny_model.encode_texts([f"a picture number {i}" for i in range(10)])
    assert res.metrics["clip_score"] == pytest.approx(clip_score(img, txt), abs=1e-4)
    assert res.metrics["vendi"] == pytest.approx(vendi_score(img), abs=1e-3)
    noise = tiny_model.encode_images([Image.open(p).convert("RGB") for p in sorted(noise_folder.iterdir(), key=lambda p: int(p.stem))])
    assert res.metrics["cmmd"] == pytest.approx(cmmd(img, noise), rel=1e-3)
    assert "ref_clip_score" in res.metrics  # the scenes' own captions serve as references
    assert {"sce_image", "sce_text"} <= set(res.metrics)


def test_skill_twins_by_hand():
    a = synthetic.SceneObject("star", "red", "small", "top left")
    b = synthetic.SceneObject("square", "blue", "large", "bottom right")
    spec = synthetic.SceneSpec((a, b), "plain", 100, 0, 1)
    twin = skills.swap_attribute(spec, "color")
    assert synthetic.short_caption(twin) == "a blue star and a red square"
    assert skills.swap_attribute(synthetic.SceneSpec((a, a), "plain", 100, 0, 1), "color") is None
    rel = dict((axis, (t, f)) for axis, t, f in skills.relation_captions(spec))
    assert rel["left/right"] == ("a red star to the left of a blue square", "a red star to the right of a blue square")
    assert rel["above/below"] == ("a red star above a blue square", "a red star below a blue square")
    assert skills.count_prompt(1) == "a picture of one shape" and skills.count_prompt(3) == "a picture of three shapes"


def test_skills_rows_and_metrics(tiny_model):
    res = skills.run_skills(tiny_model, n=12, seed=5, image_size=32)
    names = {r.skill for r in res.rows}
    assert names == {"binding", "spatial", "spatial_absolute", "counting", "long_caption_retrieval"}
    assert set(res.metrics) == {"binding", "spatial", "spatial_absolute", "counting", "long_caption_retrieval"}
    binding = [r for r in res.rows if r.skill == "binding"]
    assert res.metrics["binding"] == pytest.approx(np.average([r.accuracy for r in binding], weights=[r.n for r in binding]))
    assert all(0 <= r.accuracy <= 1 for r in res.rows)
    assert json.loads(json.dumps(res.to_json()))["rows"][0]["skill"] == "binding"
