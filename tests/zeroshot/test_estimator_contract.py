"""The scikit-learn estimator contract of the zero-shot heads, and where the design departs from it.

A zero-shot head's classes are the class names it was built with and its input width is its model's
embedding width: both are fixed before ``fit`` sees any data. scikit-learn's generic checks feed
arbitrary widths, integer features and integer labels, so the checks that assume a head learns its
classes and width from ``X, y`` are expected to fail. Each is listed with the reason; every other
check (unfitted use, sparse and complex input, empty data, params, cloning, repr) must pass; NaN/inf
refusal is tested directly in test_classifier.py, since the generic check first fits on data of another width.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from cliplab.errors import InputError
from cliplab.zeroshot import ContextualClassifier, DescriptorClassifier, ZeroShotClassifier

from .conftest import FakeModel

WIDTH = "the head's width is its model's embedding width, fixed before fit; the check feeds another width"
CLASSES = "the head's classes are its class names, fixed before fit; the check's labels are not among them"
EXPECTED_FAILURES = {
    **dict.fromkeys([
        "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_pipeline_consistency",
        "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_supervised_y_2d",
        "check_decision_proba_consistency", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
        "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d", "check_requires_y_none",
        "check_estimators_nan_inf",
    ], WIDTH),  # fmt: skip
    **dict.fromkeys(["check_classifiers_classes", "check_classifiers_train", "check_classifiers_one_label"], CLASSES),
    "check_classifiers_regression_target": "a continuous target is refused as labels that are not class names",
    "check_dtype_object": "object arrays are refused: embeddings are float arrays",
    "check_classifier_data_not_an_array": "integer features are refused: embeddings are float arrays",
}


def _head() -> ZeroShotClassifier:
    return ZeroShotClassifier(FakeModel(dim=8, hash_unknown=True), ["0", "1", "2"], templates=["{c}"])


@parametrize_with_checks([_head()], expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
@pytest.mark.filterwarnings("ignore::cliplab.validation.NormWarning")
def test_sklearn_checks(estimator, check):
    """One scikit-learn estimator check; the check raises (AssertionError or the error it expects not to
    see) when the estimator breaks the contract, so the test fails then."""
    check(estimator)


def test_every_zero_shot_head_validates_its_parameters_at_fit():
    """scikit-learn's check_param_validation: a constraint for every constructor argument, and a wrong
    type or value refused at the start of fit with scikit-learn's message, as a cliplab InputError."""
    from sklearn.utils.estimator_checks import check_param_validation

    model = FakeModel(dim=8, hash_unknown=True)
    heads = [
        _head(),
        DescriptorClassifier(model, {"0": ["a"], "1": ["b"]}),
        ContextualClassifier(model, ["0", "1"], {"background": {"plain": "", "busy": "busy background"}}),
    ]
    for head in heads:
        check_param_validation(type(head).__name__, head)
    with pytest.raises(InputError, match="The 'infer_mode' parameter of ContextualClassifier must be a str among"):
        heads[2].set_params(infer_mode="guess").fit()


def test_binary_zero_shot_works_with_the_roc_auc_scorer():
    from sklearn.metrics import get_scorer, roc_auc_score

    head = ZeroShotClassifier(FakeModel(dim=8, hash_unknown=True), ["cat", "dog"], templates=["{c}"]).fit()
    X = np.random.default_rng(0).standard_normal((12, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.array(["cat", "dog"] * 6)
    assert head.decision_function(X).shape == (12,)
    assert get_scorer("roc_auc")(head, X, y) == pytest.approx(roc_auc_score(y == "dog", head.predict_proba(X)[:, 1]))
