"""scikit-learn's estimator checks for the heads that need nothing but (X, y)."""

import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from cliplab.adapt import GDA, GaussianOneClass, KNNOneClass, LinearProbe
from cliplab.errors import InputError

# Why each allowed failure is by design.
OWN_MESSAGE = "refused with cliplab's own one-line InputError (a ValueError), not the wording the check looks for"
INTEGER_X = "integer X is refused on purpose: embeddings are floats, integers are usually labels passed by mistake"
TWO_COLUMNS = "decision_function is N x C for two classes too (one column per class, the cliplab contract), not a 1-D score"
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
    "check_classifiers_classes": TWO_COLUMNS,
    "check_classifiers_train": TWO_COLUMNS,
    "check_decision_proba_consistency": TWO_COLUMNS,
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
    if isinstance(estimator, LinearProbe):  # its two columns are -z/2, z/2: ranks agree with the probabilities
        return {k: v for k, v in CLASSIFIERS.items() if k != "check_decision_proba_consistency"}
    return CLASSIFIERS


@parametrize_with_checks(
    [GDA(alpha=1.0), LinearProbe(C=1.0), KNNOneClass(k=3), GaussianOneClass()],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    """One scikit-learn estimator check; the check raises (AssertionError or the error it expects not to
    see) when the estimator breaks the contract, so the test fails then."""
    check(estimator)


def _param_heads(model, toy):
    from cliplab.adapt import (
        CLIPSVD, CoCoOp, CoOp, ConformalClassifier, HypOneClass, SupportSetAdapter, TemperatureScaling, TipAdapter,
        TipAdapterF,
    )  # fmt: skip
    from cliplab.adapt.fixed import TextWeightsHead

    fitted = GDA(alpha=1.0).fit(toy["X"], toy["y"])
    return [
        GDA(), LinearProbe(), TextWeightsHead(), TipAdapter(), TipAdapterF(), SupportSetAdapter(),
        CoOp(model), CoCoOp(model), CLIPSVD(model),
        KNNOneClass(), GaussianOneClass(), HypOneClass(),
        TemperatureScaling(fitted), ConformalClassifier(fitted),
    ]  # fmt: skip


def test_every_head_validates_its_parameters_at_fit(tiny_model, toy):
    """scikit-learn's check_param_validation: a constraint for every constructor argument, and a wrong
    type or value refused at the start of fit with scikit-learn's message, as a cliplab InputError."""
    from sklearn.utils.estimator_checks import check_param_validation

    heads = _param_heads(tiny_model, toy)
    for head in heads:
        check_param_validation(type(head).__name__, head)
    assert len({type(h) for h in heads}) == 14


@pytest.mark.parametrize("head, match", [
    (GDA(alpha=-1.0), "The 'alpha' parameter of GDA must be None or a float in the range \\[0.0, inf\\). Got -1.0"),
    (LinearProbe(zero_shot="both"), "The 'zero_shot' parameter of LinearProbe must be a str among"),
    (KNNOneClass(k=0), "The 'k' parameter of KNNOneClass must be an int in the range \\[1, inf\\)"),
])  # fmt: skip
def test_a_bad_parameter_is_one_cliplab_error(toy, head, match):
    with pytest.raises(InputError, match=match) as caught:
        head.fit(toy["X"], toy["y"])
    assert isinstance(caught.value, InvalidParameterError) and "\n" not in str(caught.value)
