import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from sklearn.exceptions import NotFittedError

from cliplab.errors import InputError
from cliplab.validation import NormWarning
from cliplab.zeroshot import ZeroShotClassifier

TABLE = {"a photo of a cat.": [1, 0, 0], "a photo of a dog.": [0, 1, 0], "a photo of a car.": [0, 0, 1]}
CLASSES = ["cat", "dog", "car"]


def test_decision_function_by_hand(make_model):
    clf = ZeroShotClassifier(make_model(TABLE, logit_scale=10.0), CLASSES).fit()
    X = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(clf.decision_function(X), [[6, 8, 0], [0, 0, 10]], atol=1e-5)
    p = clf.predict_proba(X)
    e = np.exp([6.0, 8.0, 0.0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-5)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    assert clf.predict(X).tolist() == ["dog", "car"]
    assert clf.classes_.tolist() == CLASSES and clf.text_weights_.dtype == np.float32
    assert clf.score(X, ["dog", "cat"]) == 0.5


def test_unfitted_raises_and_params(make_model):
    model = make_model(TABLE)
    clf = ZeroShotClassifier(model, CLASSES)
    with pytest.raises(NotFittedError):
        clf.predict([[1.0, 0, 0]])
    assert clf.fit().predict([[1.0, 0, 0]]).tolist() == ["cat"]
    assert clf.get_params() == {"model": model, "classnames": CLASSES, "templates": "default"}


def test_clone_shares_model_and_keeps_args(make_model):
    model = make_model(TABLE)
    clf = ZeroShotClassifier(model, CLASSES, templates=["a photo of a {c}."]).fit()
    c = clone(clf)
    assert c.model is model and c.classnames == CLASSES and c.templates == ["a photo of a {c}."]
    assert not hasattr(c, "text_weights_")


def test_cross_val_score_in_pipeline(make_model):
    model = make_model(TABLE)
    rng = np.random.default_rng(0)
    y_idx = np.arange(30) % 3
    X = np.eye(3)[y_idx] * 5 + 0.1 * rng.random((30, 3))  # unnormalised; the pipeline normalises
    y = np.array(CLASSES)[y_idx]
    pipe = make_pipeline(Normalizer(), ZeroShotClassifier(model, CLASSES))
    scores = cross_val_score(pipe, X, y, cv=3)
    np.testing.assert_allclose(scores, 1.0)


def test_input_validation(make_model):
    clf = ZeroShotClassifier(make_model(TABLE), CLASSES).fit()
    with pytest.raises(InputError, match=r"X has 4 features per row but this head expects 3"):
        clf.predict(np.zeros((2, 4)))
    with pytest.raises(InputError, match="must be 2-D"):
        clf.predict(np.zeros(3))
    with pytest.raises(ValueError, match="labels must be class names"):
        clf.fit(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="unique"):
        ZeroShotClassifier(make_model(TABLE), ["cat", "cat"]).fit()


def test_bad_arrays_are_refused_in_one_line(make_model):
    clf = ZeroShotClassifier(make_model(TABLE), CLASSES).fit()
    X = np.eye(3, dtype=np.float32)
    for bad, message in [
        (np.array([[np.nan, 0, 1]], np.float32), "1 row\\(s\\) with NaN or inf"),
        (np.array([[np.inf, 0, 1], [1, 0, 0]]), "NaN or inf"),
        (np.array([["a", "b", "c"]]), "dtype <U1"),
        (np.array([[1, 0, 0]]), "integer dtype"),
        (np.array([[1 + 1j, 0, 0]]), "Complex data not supported"),
    ]:
        with pytest.raises(InputError, match=message):
            clf.predict(bad)
    with pytest.raises(InputError, match="X has 3 rows but y has 2 labels"):
        ZeroShotClassifier(make_model(TABLE), CLASSES).fit(X, ["cat", "dog"])


def test_far_from_unit_rows_warn_once(make_model):
    clf = ZeroShotClassifier(make_model(TABLE), CLASSES).fit()
    with pytest.warns(NormWarning, match="2 of 3 rows of X are not unit length") as caught:
        clf.predict(np.array([[3.0, 0, 0], [0, 1, 0], [0, 0, 0.2]], np.float32))
    assert len([w for w in caught if w.category is NormWarning]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(np.eye(3, dtype=np.float32))  # unit rows: silent


@pytest.mark.parametrize("names, message", [
    ("circle", "not a single string \\('circle'\\)"),
    ([1, 2], "must be strings; got int 1"),
    (["cat", ""], "empty name"),
    ([], "is empty"),
    (["cat", "cat"], "repeats 'cat'"),
])  # fmt: skip
def test_class_names_must_be_distinct_strings(make_model, names, message):
    with pytest.raises(InputError, match=message):
        ZeroShotClassifier(make_model(TABLE), names).fit()


def test_names_equal_up_to_case_warn(make_model):
    model = make_model({"a photo of a circle.": [1, 0, 0], "a photo of a Circle .": [0, 1, 0]})
    with pytest.warns(UserWarning, match="'circle' and 'Circle ' differ only in case or spacing"):
        ZeroShotClassifier(model, ["circle", "Circle "]).fit()
