import numpy as np
import pytest

from cliplab.dense.metrics import IGNORE, SegmentationScores, image_miou
from cliplab.errors import InputError


def test_hand_computed_ious():
    true = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    s = SegmentationScores(["bg", "a", "b"])
    s.add(true, pred)
    # bg: inter 1, union 3; a: inter 2, union 3; b: inter 1, union 2
    np.testing.assert_allclose(s.per_class_iou(), [1 / 3, 2 / 3, 1 / 2])
    assert s.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s.pixel_accuracy() == pytest.approx(4 / 6)
    # foreground: truth fg at 4 pixels, prediction fg at 4, both at 3
    assert s.foreground_iou() == pytest.approx(3 / 5)


def test_ignored_pixels_and_absent_classes():
    s = SegmentationScores(["bg", "a", "b"])
    s.add(np.array([[0, IGNORE]]), np.array([[0, 2]]))
    assert np.isnan(s.per_class_iou()[1]) and s.miou() == pytest.approx(1.0)
    assert image_miou(np.array([[1, 1]]), np.array([[1, 0]]), 2) == pytest.approx((0 + 0.5) / 2)
    with pytest.raises(InputError):
        s.add(np.array([[3]]), np.array([[0]]))
