import json

import numpy as np
import pytest
from sklearn.base import clone

from cliplab.zeroshot import DescriptorClassifier, descriptor_prompt, load_descriptors, make_descriptor_sentence


@pytest.mark.parametrize("descriptor, sentence", [
    ("a long tail", "which is a long tail"),           # article
    ("an orange beak", "which is an orange beak"),     # article
    ("antennae", "which is antennae"),                 # QUIRK: startswith('a')
    ("has wings", "which has wings"),
    ("often found near water", "which often found near water"),
    ("typically brown", "which typically brown"),
    ("may have spots", "which may have spots"),
    ("can fly", "which can fly"),
    ("used for cutting", "which is used for cutting"),
    ("stripes", "which has stripes"),                  # default
    ("A big head", "which has A big head"),            # case-sensitive, as the release
])
def test_sentence_rules(descriptor, sentence):
    assert make_descriptor_sentence(descriptor) == sentence


@pytest.mark.parametrize("descriptor, sentence", [
    ("a long tail", "which is a long tail"),
    ("an orange beak", "which is an orange beak"),
    ("antennae", "which has antennae"),
    ("apple-shaped body", "which has apple-shaped body"),
    ("used for cutting", "which is used for cutting"),
    ("has wings", "which has wings"),
])
def test_strict_articles(descriptor, sentence):
    assert make_descriptor_sentence(descriptor, strict_articles=True) == sentence


def test_prompt_form():
    assert descriptor_prompt("tiger", "stripes") == "tiger, which has stripes"
    assert descriptor_prompt("tiger", "stripes", after_text=".") == "tiger, which has stripes."


DESCS = {"tiger": ["stripes", "a long tail"], "zebra": ["black and white stripes"]}
TABLE = {
    "tiger, which has stripes": [1, 0, 0],
    "tiger, which is a long tail": [0, 1, 0],
    "zebra, which has black and white stripes": [0, 0, 1],
}
# image rows and their cosines with (stripes, long tail, b/w stripes)
X = np.array([[0.8, 0.6, 0.0],   # .8 .6 0   -> tiger mean .7, zebra 0
              [0.6, 0.0, 0.8],   # .6 0 .8   -> tiger .3, zebra .8
              [0.0, 0.8, 0.6]],  # 0 .8 .6   -> tiger .4 < zebra .6 (mean); tiger .8 > .6 (max)
             np.float32)


def test_mean_aggregation_by_hand(make_model):
    model = make_model(TABLE, logit_scale=10.0)
    clf = DescriptorClassifier(model, DESCS).fit()
    assert model.calls == [list(TABLE)]
    np.testing.assert_allclose(clf.class_scores(X), [[0.7, 0.0], [0.3, 0.8], [0.4, 0.6]], atol=1e-6)
    # two classes: scikit-learn's (N,) score of classes_[1] over classes_[0]
    assert clf.classes_.tolist() == ["tiger", "zebra"]
    np.testing.assert_allclose(clf.decision_function(X), [-0.7, 0.5, 0.2], atol=1e-6)
    assert clf.predict(X).tolist() == ["tiger", "zebra", "zebra"]
    e = np.exp([7.0, 0.0])
    np.testing.assert_allclose(clf.predict_proba(X)[0], e / e.sum(), rtol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1, rtol=1e-6)


def test_max_and_sum(make_model):
    clf = DescriptorClassifier(make_model(TABLE), DESCS, aggregate="max").fit()
    np.testing.assert_allclose(clf.class_scores(X), [[0.8, 0.0], [0.6, 0.8], [0.8, 0.6]], atol=1e-6)
    assert clf.predict(X).tolist() == ["tiger", "zebra", "tiger"]
    clf = DescriptorClassifier(make_model(TABLE), DESCS, aggregate="sum").fit()
    np.testing.assert_allclose(clf.class_scores(X)[:, 0], [1.4, 0.6, 0.8], atol=1e-6)
    with pytest.raises(ValueError, match="The .aggregate. parameter of DescriptorClassifier must be a str among"):
        DescriptorClassifier(make_model(TABLE), DESCS, aggregate="median").fit()


def test_explain_ranks_descriptors(make_model):
    clf = DescriptorClassifier(make_model(TABLE), DESCS).fit()
    rows = clf.explain(np.array([[0.8, 0.6, 0.0], [0.6, 0.8, 0.0]]), top=3)
    assert rows[0]["label"] == "tiger" and rows[0]["score"] == pytest.approx(0.7)
    assert [d["descriptor"] for d in rows[0]["descriptors"]] == ["stripes", "a long tail"]
    assert [d["descriptor"] for d in rows[1]["descriptors"]] == ["a long tail", "stripes"]
    assert rows[1]["descriptors"][0]["similarity"] == pytest.approx(0.8)
    assert len(clf.explain(X[:1], top=1)[0]["descriptors"]) == 1
    json.dumps(rows)  # plain data


def test_load_from_json_and_errors(tmp_path, make_model):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(DESCS))
    assert load_descriptors(path) == DESCS
    clf = DescriptorClassifier(make_model(TABLE), str(path))
    assert clone(clf).descriptors == str(path)
    assert clf.fit().predict(X[:1]).tolist() == ["tiger"]
    with pytest.raises(ValueError, match="non-empty list"):
        load_descriptors({"tiger": []})
    with pytest.raises(FileNotFoundError):
        load_descriptors(tmp_path / "nope.json")


def test_strict_articles_changes_prompts(make_model):
    model = make_model({"ant, which has antennae": [1, 0]})
    clf = DescriptorClassifier(model, {"ant": ["antennae"]}, strict_articles=True).fit()
    assert clf.prompts_ == ["ant, which has antennae"]
