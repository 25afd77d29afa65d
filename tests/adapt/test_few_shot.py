import numpy as np
import pytest
from PIL import Image

from cliplab.data import few_shot_split
from cliplab.data.few_shot import augmented_views
from cliplab.errors import InputError


def test_k_per_class_seeded_and_exclusive():
    labels = ["a"] * 10 + ["b"] * 7 + [None] * 3
    rows = few_shot_split(labels, 4, seed=1)
    picked = np.array(labels, dtype=object)[rows]
    assert sorted(picked.tolist()) == ["a"] * 4 + ["b"] * 4
    assert np.array_equal(rows, few_shot_split(labels, 4, seed=1))
    assert not np.array_equal(rows, few_shot_split(labels, 4, seed=2))
    other = few_shot_split(labels, 3, seed=5, exclude=rows)
    assert not set(other) & set(rows)


def test_short_class_uses_all_with_warning():
    labels = [0] * 5 + [1] * 2
    with pytest.warns(UserWarning, match="fewer than 4"):
        rows = few_shot_split(labels, 4, seed=0)
    assert sorted(np.array(labels)[rows].tolist()) == [0] * 4 + [1] * 2


def test_bad_shots():
    with pytest.raises(InputError):
        few_shot_split([0, 1], 0, seed=0)


def test_augmented_views_are_seeded_crops_of_the_same_size():
    image = Image.fromarray(np.arange(48 * 40 * 3, dtype=np.uint8).reshape(48, 40, 3))
    views = augmented_views([image, image], n_views=3, seed=7)
    assert len(views) == 2 and all(len(v) == 3 for v in views)
    assert all(v.size == image.size for per in views for v in per)
    again = augmented_views([image, image], n_views=3, seed=7)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(views[0], again[0]))
    assert not all(np.array_equal(np.asarray(a), np.asarray(image)) for a in views[0])


def test_stratified_split_holds_out_a_share_of_each_class():
    import numpy as np
    import pytest

    from cliplab.data.few_shot import stratified_split
    from cliplab.errors import InputError

    y = np.array(["a"] * 10 + ["b"] * 4 + ["c"])
    kept, held = stratified_split(y, 0.3, seed=1)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(y)))
    assert [int((y[held] == c).sum()) for c in "abc"] == [3, 1, 0]
    kept1, held1 = stratified_split(y, 0.01, seed=1, keep_one=True)
    assert [int((y[held1] == c).sum()) for c in "abc"] == [1, 1, 0]  # at least one held, a singleton kept
    assert np.array_equal(stratified_split(y, 0.3, seed=1)[1], held)
    with pytest.raises(InputError, match="--test-fraction must be in"):
        stratified_split(y, 1.0, seed=0, name="--test-fraction")
