"""Benchmark runners: results shaped like CLIP_benchmark's, values equal to the metric functions'."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cliplab.data import synthetic
from cliplab.data.images import decode_image
from cliplab.data.sources import ImageSource, SourceError
from cliplab.evaluate.eval_report import eval_report, retrieval_grid
from cliplab.evaluate.metrics import classification_metrics, retrieval_metrics
from cliplab.evaluate.runner import (
    open_dataset,
    public_result,
    resolve_classes,
    run_zeroshot_classification,
    run_zeroshot_retrieval,
    scene_templates,
)
from cliplab.zeroshot import ZeroShotClassifier

FAST = dict(batch_size=16, num_workers=0)


def _images(source: ImageSource):
    return [decode_image(it.read_bytes(), it.id) for it in source.items]


@pytest.fixture(scope="module")
def shapes() -> ImageSource:
    return open_dataset("synthetic:20:3", attribute="shape")


def test_classification_matches_metrics(tiny_model, shapes):
    result = run_zeroshot_classification(tiny_model, shapes, dataset="synthetic:20:3", **FAST)
    # independent computation from the same pieces
    X = tiny_model.encode_images(_images(shapes))
    clf = ZeroShotClassifier(tiny_model, list(synthetic.SHAPES), scene_templates("shape")).fit()
    y = [it.label for it in shapes.items]
    expected = classification_metrics(clf.decision_function(X), y, list(synthetic.SHAPES))

    public = public_result(result)
    assert set(public) >= {"dataset", "model", "pretrained", "task", "metrics"}
    assert public["dataset"] == "synthetic:20:3"
    assert public["model"] == tiny_model.name
    assert public["task"] == "zeroshot_classification"
    assert set(public["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}  # 8 shapes: acc5 defined
    for key in public["metrics"]:
        assert public["metrics"][key] == pytest.approx(expected[key], abs=1e-6)
    assert public["per_class"].keys() == expected["per_class"].keys()
    assert public["classnames"] == list(synthetic.SHAPES)
    assert public["n_images"] == 20 and public["n_unlabelled"] == 0
    json.dumps(public)  # serialisable as is
    assert "_details" not in public and result["_details"].logits.shape == (20, 8)


def test_few_classes_have_no_acc5(tiny_model):
    result = run_zeroshot_classification(tiny_model, open_dataset("synthetic:12:1", attribute="size"), **FAST)
    assert set(result["metrics"]) == {"acc1", "mean_per_class_recall"}


def test_background_attribute_labels_from_metadata():
    source = open_dataset("synthetic:6:2", attribute="background")
    assert source.classes == list(synthetic.BACKGROUNDS)
    assert [it.label for it in source.items] == [it.meta["background"] for it in source.items]
    assert all(len(it.meta["objects"]) == 1 for it in source.items)
    with pytest.raises(SourceError, match="not a scene attribute"):
        open_dataset("synthetic:6:2", attribute="texture")


def test_resolve_classes(shapes):
    assert resolve_classes(shapes, None) == (list(synthetic.SHAPES), list(synthetic.SHAPES))
    extra = [*synthetic.SHAPES, "hexagon"]
    assert resolve_classes(shapes, extra) == (extra, extra)  # a superset: distractor classes
    renamed = [f"a {s}" for s in synthetic.SHAPES]
    assert resolve_classes(shapes, renamed) == (list(synthetic.SHAPES), renamed)  # renamed in order
    with pytest.raises(ValueError, match="neither contain"):
        resolve_classes(shapes, ["circle", "square"])
    for names in (None, ["a", "b"]):
        with pytest.raises(ValueError, match="has no labels"):
            resolve_classes(open_dataset("synthetic:2"), names)


def test_renamed_classes_keep_labels(tiny_model, shapes):
    renamed = [f"{s} shape" for s in synthetic.SHAPES]
    result = run_zeroshot_classification(tiny_model, shapes, templates="default", classnames=renamed, **FAST)
    assert result["classnames"] == list(synthetic.SHAPES)
    clf = ZeroShotClassifier(tiny_model, renamed, "default").fit()
    expected = clf.decision_function(tiny_model.encode_images(_images(shapes)))
    np.testing.assert_allclose(result["_details"].logits, expected, atol=1e-4)


def _captioned(source: ImageSource) -> ImageSource:
    """Give every other image a second caption (its short caption), and one image none."""
    for i, it in enumerate(source.items):
        if i % 2:
            it.captions.append(it.meta["short_caption"])
    source.items[0].captions = []
    return source


def test_retrieval_matches_metrics(tiny_model):
    source = _captioned(open_dataset("synthetic:16:5"))
    result = run_zeroshot_retrieval(tiny_model, source, ks=(1, 5), **FAST)
    texts = [c for it in source.items for c in it.captions]
    t2i = [i for i, it in enumerate(source.items) for _ in it.captions]
    expected = retrieval_metrics(tiny_model.encode_images(_images(source)), tiny_model.encode_texts(texts), t2i, (1, 5))
    assert result["task"] == "zeroshot_retrieval"
    assert set(result["metrics"]) == {f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 5)}
    for key, value in expected.items():
        assert result["metrics"][key] == pytest.approx(value, abs=1e-6)
    assert result["n_texts"] == len(texts) == (16 - 1) + 8  # image 0 has none, odd ones two
    assert all(0 <= v <= 1 and not math.isnan(v) for v in result["metrics"].values())


def test_retrieval_needs_captions(tiny_model):
    source = open_dataset("synthetic:3")
    for it in source.items:
        it.captions = []
    with pytest.raises(ValueError, match="no captions"):
        run_zeroshot_retrieval(tiny_model, source, **FAST)
    with pytest.raises(ValueError, match=">= 1"):
        run_zeroshot_retrieval(tiny_model, open_dataset("synthetic:3"), ks=(0,), **FAST)


def test_reports_have_figures(tiny_model, shapes, tmp_path):
    cls = eval_report(run_zeroshot_classification(tiny_model, shapes, **FAST)).save(tmp_path / "c.html").read_text()
    assert cls.count("data:image/png;base64,") >= 2  # confusion matrix, per-class recall (+ errors)
    assert "Confusion matrix" in cls and "acc1" in cls
    ret = eval_report(run_zeroshot_retrieval(tiny_model, open_dataset("synthetic:8:1"), **FAST)).to_html()
    assert ret.count("data:image/png;base64,") == 1 and "image_retrieval_recall@5" in ret


def test_retrieval_grid_outlines_the_match():
    img = np.eye(3, dtype=np.float32)
    png = retrieval_grid(img, img, ["a", "b", "c"], [0, 1, 2], lambda i: np.full((8, 8, 3), 50 * i, np.uint8), k=2)
    assert png.startswith(b"\x89PNG")
