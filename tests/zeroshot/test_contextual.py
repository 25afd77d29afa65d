import math

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.base import clone

from cliplab.zeroshot import ContextualClassifier, compose_contexts
from cliplab.zeroshot.contextual import context_text

ATTRS = {"background": {"indoor": "indoors", "outdoor": ["outdoors", "outside"]}}
TABLE = {
    "a photo of a cat, indoors.": [1, 0, 0, 0],
    "a photo of a cat, outdoors.": [0, 1, 0, 0],
    "a photo of a cat, outside.": [0, 0.6, 0.8, 0],   # mean with the above -> [0,2,1,0]/sqrt5
    "a photo of a dog, indoors.": [0, 0, 0, 1],
    "a photo of a dog, outdoors.": [0, 0, 1, 0],
    "a photo of a dog, outside.": [0, 0, 1, 0],
    "a photo of a object, indoors.": [0.6, 0, 0, 0.8],
    "a photo of a object, outdoors.": [0, 0.6, 0.8, 0],
    "a photo of a object, outside.": [0, 0.8, 0.6, 0],  # mean -> [0,1,1,0]/sqrt2
}
X = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
S, T = 2.0, 2.0  # logit scale, temperature
# f(y, z; x) = S * cos: cat-indoor .5, cat-outdoor 1.5/sqrt5, dog-indoor .5, dog-outdoor .5
F = {("cat", "in"): S * 0.5, ("cat", "out"): S * 1.5 / math.sqrt(5), ("dog", "in"): S * 0.5, ("dog", "out"): S * 0.5}


def _step2_and_marginal(pz_in, pz_out):
    # P(y|x,z) = softmax_y f(y,z;x), temperature 1
    def p_y(z):
        a, b = math.exp(F[("cat", z)]), math.exp(F[("dog", z)])
        return a / (a + b), b / (a + b)
    cat = pz_in * p_y("in")[0] + pz_out * p_y("out")[0]
    dog = pz_in * p_y("in")[1] + pz_out * p_y("out")[1]
    return [cat, dog]


def test_two_step_with_y_by_hand(make_model):
    model = make_model(TABLE, logit_scale=S)
    clf = ContextualClassifier(model, ["cat", "dog"], ATTRS, temperature=T).fit()
    assert clf.contexts_ == [{"background": "indoor"}, {"background": "outdoor"}]
    # P(z|x) = sum_y exp(f/T) / sum_z' sum_y exp(f/T)
    w_in = math.exp(F[("cat", "in")] / T) + math.exp(F[("dog", "in")] / T)
    w_out = math.exp(F[("cat", "out")] / T) + math.exp(F[("dog", "out")] / T)
    pz = [w_in / (w_in + w_out), w_out / (w_in + w_out)]
    np.testing.assert_allclose(clf.context_proba(X)[0], pz, rtol=1e-5)
    expected = _step2_and_marginal(*pz)
    np.testing.assert_allclose(clf.predict_proba(X)[0], expected, rtol=1e-5)
    np.testing.assert_allclose(clf.class_scores(X)[0], np.log(expected), rtol=1e-5)
    np.testing.assert_allclose(clf.decision_function(X)[0], np.log(expected[1] / expected[0]), rtol=1e-5)
    assert clf.predict(X).tolist() == ["cat"]


def test_two_step_without_y_by_hand(make_model):
    model = make_model(TABLE, logit_scale=S)
    clf = ContextualClassifier(model, ["cat", "dog"], ATTRS, temperature=T, infer_mode="without_y").fit()
    assert len(model.calls) == 1 and len(model.calls[0]) == 9  # one batched call, incl. "object" texts
    # f(z; x) with "object": indoor S*.7, outdoor S*(1/sqrt2); P(z|x) = softmax_z(f/T)
    a, b = math.exp(S * 0.7 / T), math.exp(S / math.sqrt(2) / T)
    pz = [a / (a + b), b / (a + b)]
    np.testing.assert_allclose(clf.context_proba(X)[0], pz, rtol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(X)[0], _step2_and_marginal(*pz), rtol=1e-5)


def test_compose_contexts_product_and_empty_description():
    labels, descs = compose_contexts({
        "orientation": {"upright": "upright", "rotated": ["rotated", "tilted"]},
        "background": {"others": "", "natural": "natural background"},
    })
    assert labels == [
        {"orientation": "upright", "background": "others"},
        {"orientation": "upright", "background": "natural"},
        {"orientation": "rotated", "background": "others"},
        {"orientation": "rotated", "background": "natural"},
    ]
    assert descs == [["upright"], ["upright, natural background"], ["rotated", "tilted"],
                     ["rotated, natural background", "tilted, natural background"]]
    assert context_text("a photo of a cat", "") == "a photo of a cat."
    assert context_text("a photo of a cat", "upright") == "a photo of a cat, upright."
    assert compose_contexts({}) == ([{}], [[""]])


def test_errors_and_clone(make_model):
    model = make_model(TABLE, logit_scale=S)
    with pytest.raises(ValueError, match="infer_mode"):
        ContextualClassifier(model, ["cat", "dog"], ATTRS, infer_mode=0).fit()
    with pytest.raises(ValueError, match="temperature"):
        ContextualClassifier(model, ["cat", "dog"], ATTRS, temperature=0).fit()
    with pytest.raises(ValueError, match="no description"):
        ContextualClassifier(model, ["cat"], {"bg": {"x": []}}).fit()
    c = clone(ContextualClassifier(model, ["cat", "dog"], ATTRS, temperature=T))
    assert c.model is model and c.attributes == ATTRS
    with pytest.raises(NotFittedError):
        c.predict_proba(X)
    np.testing.assert_allclose(c.fit().predict_proba(X).sum(1), 1, rtol=1e-6)
