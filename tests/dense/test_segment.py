"""cliplab.segment on random models: shapes, probabilities, background handling, options."""

import json

import numpy as np
import pytest
from PIL import Image

from cliplab.dense import Segmenter, segment
from cliplab.errors import InputError


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (45, 70, 3), dtype=np.uint8))


@pytest.mark.parametrize("method", ["vanilla", "maskclip", "sclip", "clearclip", "naclip"])
def test_output_shapes_and_probabilities(tiny_model, image, method):
    seg = segment(tiny_model, image, ["sky", "road", "car"], method=method)
    assert seg.classes == ["background", "sky", "road", "car"]
    assert seg.labels.shape == (45, 70) and seg.labels.dtype == np.int64
    assert seg.probs.shape == (4, 45, 70) and seg.probs.dtype == np.float32
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(seg.labels, seg.probs.argmax(0))
    assert sum(seg.areas().values()) == pytest.approx(1.0)


def test_no_background_and_threshold(tiny_model, image):
    plain = segment(tiny_model, image, ["sky", "road"], background=None)
    assert plain.classes == ["sky", "road"] and plain.probs.shape[0] == 2
    strict = segment(tiny_model, image, ["sky", "road"], background=None, threshold=1.0)
    assert strict.classes == ["background", "sky", "road"] and (strict.labels == 0).all()
    np.testing.assert_allclose(strict.probs[0], 0.0)


def test_window_size_pamr_and_resnet(tiny_model, resnet_model, image):
    seg = segment(tiny_model, image, ["a", "b"], window=32, stride=16, size=48, refine="pamr", pamr_dilations=(1, 2))
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-5)
    seg = segment(resnet_model, image, ["a", "b"], method="maskclip")
    assert seg.labels.shape == (45, 70)


def test_batched_equals_one_by_one(tiny_model):
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    seg = Segmenter(tiny_model, ["a", "b"], method="sclip")
    for one, many in zip([seg(im) for im in images], seg.many(images)):
        np.testing.assert_allclose(one.probs, many.probs, atol=1e-5)


def test_bad_arguments(tiny_model, image):
    with pytest.raises(InputError, match="unknown dense method"):
        segment(tiny_model, image, ["a"], method="nope")
    with pytest.raises(InputError, match="background"):
        segment(tiny_model, image, ["background", "a"])
    with pytest.raises(InputError, match="threshold"):
        segment(tiny_model, image, ["a"], threshold=2.0)


def test_auto_method_follows_the_architecture(tiny_model, resnet_model):
    assert Segmenter(tiny_model, ["a", "b"]).method == "naclip"  # a ViT
    assert Segmenter(resnet_model, ["a", "b"]).method == "maskclip"  # a ResNet's attention pool
    assert Segmenter(resnet_model, ["a", "b"], method="sclip").method == "sclip"


def test_default_segment_of_the_bundled_resnet_does_not_paint_scenes_one_class(cli, tmp_path):
    """Six 3-object test scenes, each with its own three shapes as classes: the default method
    (clearclip before auto) labelled five of them one class; maskclip, auto's pick, at most one."""
    from cliplab.data import synthetic

    one_class = 0
    for i in range(6):
        scene = synthetic.scene(i, seed=0, split="test", max_objects=3, min_objects=3)
        scene.image.save(tmp_path / f"s{i}.png")
        names = ",".join(sorted({o.shape for o in scene.spec.objects}))
        result = cli("segment", "--image", tmp_path / f"s{i}.png", "--classes", names, "--out", tmp_path / f"seg{i}")
        assert result.exit_code == 0, result.output
        one_class += len(np.unique(np.asarray(Image.open(tmp_path / f"seg{i}" / "labels.png")))) == 1
    assert one_class <= 1
    assert json.loads((tmp_path / "seg0" / "areas.json").read_text())["method"] == "maskclip"
