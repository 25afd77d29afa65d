"""scikit-learn's estimator checks for the heads that need nothing but (X, y), and its parameter check for every head."""

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

import cliplab.adapt as adapt
from cliplab.adapt import GDA, GaussianOneClass, KNNOneClass, LinearProbe
from cliplab.adapt.fixed import TextWeightsHead
from cliplab.errors import InputError

# Why each allowed failure is by design.
OWN_MESSAGE = "refused with cliplab's own one-line InputError (a ValueError), not the wording the check looks for"
INTEGER_X = "integer X is refused on purpose: embeddings are floats, integers are usually labels passed by mistake"
COMMON = {
    "check_classifier_data_not_an_array": INTEGER_X,
    "check_estimators_dtypes": INTEGER_X,
    "check_complex_data": OWN_MESSAGE,
    "check_dtype_object": OWN_MESSAGE,
    "check_fit2d_predict1d": OWN_MESSAGE,
    "check_n_features_in_after_fitting": OWN_MESSAGE + " (the wrong-width message names the embedding model)",
}
CLASSIFIERS = {
    **COMMON,
    "check_classifiers_regression_target": "labels may be ints, floats or strings: a float target is one more label set",
    "check_requires_y_none": OWN_MESSAGE,
    "check_supervised_y_2d": "a (n, 1) label column is accepted as 1-D without a DataConversionWarning",
}
ONE_CLASS = {
    **COMMON,
    "check_fit2d_1sample": "one good sample cannot describe normality; the detectors ask for two",
    "check_outliers_train": "predict flags the fraction fpr of the training rows (no contamination parameter)",
}


def expected_failed_checks(estimator):
    if hasattr(estimator, "anomaly_score"):
        return ONE_CLASS
    return CLASSIFIERS


@parametrize_with_checks(
    [GDA(alpha=1.0), LinearProbe(C=1.0), KNNOneClass(k=3), GaussianOneClass()],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    """One scikit-learn estimator check; the check raises (AssertionError or the error it expects not to
    see) when the estimator breaks the contract, so the test fails then."""
    check(estimator)


def _fitted():
    rng = np.random.default_rng(0)
    return GDA(alpha=1.0).fit(rng.normal(size=(8, 4)), np.arange(8) % 2)


STAND_IN = SimpleNamespace(name="stand-in")  # fit refuses a bad parameter before it touches the model
PARAM_HEADS = [
    GDA, LinearProbe, TextWeightsHead, adapt.TipAdapter, adapt.TipAdapterF, adapt.SupportSetAdapter,
    lambda: adapt.CoOp(STAND_IN), lambda: adapt.CoCoOp(STAND_IN), lambda: adapt.CLIPSVD(STAND_IN),
    KNNOneClass, GaussianOneClass, adapt.HypOneClass,
    lambda: adapt.TemperatureScaling(_fitted()), lambda: adapt.ConformalClassifier(_fitted()),
]  # fmt: skip


@pytest.mark.parametrize("make", PARAM_HEADS)
@pytest.mark.filterwarnings("ignore::cliplab.validation.NormWarning")
def test_every_head_validates_its_parameters_at_fit(make):
    """scikit-learn's check_param_validation: a constraint for every constructor argument, and a wrong
    type or value refused at the start of fit with scikit-learn's message, as a cliplab InputError."""
    head = make()
    check_param_validation(type(head).__name__, head)


@pytest.mark.parametrize("head, match", [
    (GDA(alpha=-1.0), "The 'alpha' parameter of GDA must be None or a float in the range \\[0.0, inf\\). Got -1.0"),
    (LinearProbe(zero_shot="both"), "The 'zero_shot' parameter of LinearProbe must be a str among"),
    (KNNOneClass(k=0), "The 'k' parameter of KNNOneClass must be an int in the range \\[1, inf\\)"),
])  # fmt: skip
def test_a_bad_parameter_is_one_cliplab_error(toy, head, match):
    with pytest.raises(InputError, match=match) as caught:
        head.fit(toy["X"], toy["y"])
    assert isinstance(caught.value, InvalidParameterError) and "\n" not in str(caught.value)


def test_binary_decision_function_is_what_scorers_expect(toy):
    """Two classes: decision_function is (N,), the score of classes_[1] over classes_[0], as scikit-learn's
    binary scorers expect; roc_auc from it equals roc_auc from the positive class's probability."""
    from sklearn.metrics import get_scorer, roc_auc_score

    two = np.isin(toy["y"], toy["classes"][:2])
    X, y = toy["X"][two], toy["y"][two]
    for head in (GDA(alpha=1.0), LinearProbe(C=1.0)):
        head.fit(X, y)
        scores = head.decision_function(X)
        assert scores.shape == (len(X),)
        np.testing.assert_array_equal(head.predict(X), head.classes_[(scores > 0).astype(int)])
        auc = get_scorer("roc_auc")(head, X, y)
        assert auc == pytest.approx(roc_auc_score(y == head.classes_[1], head.predict_proba(X)[:, 1]))
        assert head.class_scores(X).shape == (len(X), 2)
