import numpy as np
import pytest

from cliplab.adapt import GDA, ConformalClassifier, LinearProbe, TemperatureScaling, mean_set_size, set_coverage
from cliplab.adapt._base import label_index
from cliplab.errors import InputError


@pytest.fixture(scope="module")
def calibration_data():
    """A fitted head and a large exchangeable pool of labelled rows to split many times."""
    rng = np.random.default_rng(5)
    n_classes, dim = 6, 16
    means = rng.normal(size=(n_classes, dim))

    def draw(n):
        y = rng.integers(0, n_classes, size=n)
        X = means[y] + 1.8 * rng.normal(size=(n, dim))
        return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), y

    X_fit, y_fit = draw(120)
    head = LinearProbe(C=10.0).fit(X_fit, y_fit)
    X, y = draw(3000)
    return head, X, y


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_coverage_at_least_one_minus_alpha(calibration_data, method):
    head, X, y = calibration_data
    alpha, coverages, sizes = 0.1, [], []
    rng = np.random.default_rng(0)
    for _ in range(100):
        order = rng.permutation(len(X))
        cal, test = order[:300], order[300:]
        conformal = ConformalClassifier(head, alpha=alpha, method=method).fit(X[cal], y[cal])
        sets = conformal.predict_set(X[test])
        coverages.append(set_coverage(sets, label_index(y[test], conformal.classes_, len(test))))
        sizes.append(mean_set_size(sets))
    assert np.mean(coverages) >= 1 - alpha - 0.01
    assert 1.0 <= np.mean(sizes) < len(head.classes_)  # informative sets


def test_conformal_only_calibrates_and_columns_follow_classes(calibration_data):
    head, X, y = calibration_data
    coef = head.coef_.copy()
    conformal = ConformalClassifier(head, alpha=0.2).fit(X[:200], y[:200])
    assert np.array_equal(head.coef_, coef)
    sets = conformal.predict_set(X[200:260])
    assert sets.shape == (60, len(head.classes_)) and sets.dtype == bool
    # the top class is in the set whenever the set is non-empty (LAC thresholds the probabilities)
    top = np.argmax(head.predict_proba(X[200:260]), axis=1)
    assert all(sets[i, top[i]] for i in range(60) if sets[i].any())
    wider = conformal.set_params(alpha=0.01).predict_set(X[200:260])
    assert (wider >= sets).all()
    with pytest.raises(InputError):
        ConformalClassifier(head, method="raps").fit(X[:10], y[:10])


def test_temperature_scaling_lowers_nll_and_keeps_predictions(calibration_data):
    head, X, y = calibration_data
    hot = GDA(alpha=1.0).fit(X[:200], y[:200])  # LDA logits: badly scaled probabilities
    scaled = TemperatureScaling(hot).fit(X[200:1200], y[200:1200])

    def nll(p):
        return -np.mean(np.log(p[np.arange(len(p)), label_index(y[1200:], hot.classes_, len(p))] + 1e-12))

    assert nll(scaled.predict_proba(X[1200:])) < nll(hot.predict_proba(X[1200:]))
    assert np.array_equal(scaled.predict(X[1200:]), hot.predict(X[1200:]))
    assert scaled.temperature_ > 0
