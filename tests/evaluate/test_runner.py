"""Benchmark runners: results shaped like CLIP_benchmark's, values equal to the metric functions'."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

import cliplab

from cliplab.data import synthetic
from cliplab.data.images import decode_image
from cliplab.data.sources import ImageSource, SourceError
from cliplab.evaluate.eval_report import eval_report, retrieval_grid, retrieval_queries
from cliplab.evaluate.metrics import classification_metrics, retrieval_metrics
from cliplab.evaluate.runner import (
    ClassificationResult,
    open_dataset,
    resolve_classes,
    run_zeroshot_classification,
    run_zeroshot_retrieval,
)
from cliplab.evaluate.tasks import EmbedOptions
from cliplab.zeroshot import ZeroShotClassifier

FAST = dict(opts=EmbedOptions(batch_size=16, num_workers=0))


def _images(source: ImageSource):
    return [decode_image(it.read_bytes(), it.id) for it in source.items]


@pytest.fixture(scope="module")
def shapes() -> ImageSource:
    return open_dataset("synthetic:20:3", attribute="shape")


def test_classification_matches_metrics(tiny_model, shapes):
    result = run_zeroshot_classification(tiny_model, shapes, dataset="synthetic:20:3", **FAST)
    # independent computation from the same pieces
    X = tiny_model.encode_images(_images(shapes))
    clf = ZeroShotClassifier(tiny_model, list(synthetic.SHAPES), synthetic.attribute_prompts("shape")).fit()
    y = [it.label for it in shapes.items]
    expected = classification_metrics(clf.decision_function(X), y, list(synthetic.SHAPES))

    assert isinstance(result, ClassificationResult)
    public = result.to_json()
    assert set(public) >= {"dataset", "model", "pretrained", "task", "metrics", "templates", "attribute", "precision", "cliplab_version"}
    assert public["attribute"] == "shape" and public["templates"] == synthetic.attribute_prompts("shape")
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
    assert "details" not in public and result.details.logits.shape == (20, 8)


def test_few_classes_have_no_acc5(tiny_model):
    result = run_zeroshot_classification(tiny_model, open_dataset("synthetic:12:1", attribute="size"), **FAST)
    assert set(result.metrics) == {"acc1", "mean_per_class_recall"}


def test_background_attribute_labels_from_metadata():
    source = open_dataset("synthetic:6:2", attribute="background")
    assert source.classes == list(synthetic.BACKGROUNDS)
    assert [it.label for it in source.items] == [it.meta["background"] for it in source.items]
    assert all(len(it.meta["objects"]) == 1 for it in source.items)
    with pytest.raises(ValueError, match="not a scene attribute"):
        open_dataset("synthetic:6:2", attribute="texture")


def test_attribute_only_for_synthetic_scenes(tmp_path):
    with pytest.raises(SourceError, match="attribute= applies to synthetic scenes only"):
        open_dataset(tmp_path, attribute="shape")


def test_single_class_dataset_warns(tiny_model):
    source = open_dataset("synthetic:4:1", attribute="shape")
    for it in source.items:
        it.label = "circle"
    with pytest.warns(UserWarning, match="single class"):
        run_zeroshot_classification(tiny_model, source, classnames=["circle"], **FAST)


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
    assert result.classnames == list(synthetic.SHAPES)
    clf = ZeroShotClassifier(tiny_model, renamed, "default").fit()
    expected = clf.decision_function(tiny_model.encode_images(_images(shapes)))
    np.testing.assert_allclose(result.details.logits, expected, atol=1e-4)


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
    assert result.task == "zeroshot_retrieval"
    assert set(result.metrics) == {f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 5)}
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-6)
    assert result.n_texts == len(texts) == (16 - 1) + 8  # image 0 has none, odd ones two
    assert all(0 <= v <= 1 and not math.isnan(v) for v in result.metrics.values())
    json.dumps(result.to_json())


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
    # the report says what was run: model, precision, templates, attribute, cliplab version
    for fact in (tiny_model.name, "fp32", "a photo of a circle", "shape", cliplab.__version__):
        assert fact in cls
    ret = eval_report(run_zeroshot_retrieval(tiny_model, open_dataset("synthetic:8:1"), **FAST)).to_html()
    assert "image_retrieval_recall@5" in ret and "failures" in ret


def test_retrieval_report_shows_failures():
    # caption 0 matches image 0; captions 1 and 2 are closest to the wrong image
    text = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float32)
    image = np.eye(3, dtype=np.float32)
    ok, failed = retrieval_queries(text, image, [0, 1, 2])
    assert ok == [0] and failed == [1, 2]


def test_retrieval_grid_outlines_the_match(monkeypatch):
    from cliplab.evaluate import plots

    seen = {}
    real = plots.retrieval_grid_png

    def spy(queries, images, correct, scores=None):
        seen.update(queries=queries, correct=correct, scores=scores)
        return real(queries, images, correct, scores)

    monkeypatch.setattr(plots, "retrieval_grid_png", spy)
    img = np.eye(3, dtype=np.float32)
    png = retrieval_grid(img, img, ["a", "b", "c"], [0, 1, 2], lambda i: np.full((8, 8, 3), 50 * i, np.uint8), k=2)
    assert seen["correct"] == [[True, False]] * 3  # each caption's own image ranks first
    assert [s[0] for s in seen["scores"]] == [1.0, 1.0, 1.0]
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    for colour in (plots.GREEN, plots.RED):  # both outlines are drawn
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(1) < 30).sum() > 50
