import numpy as np
import pytest

from cliplab.adapt import GDA


def slow_gda_logits(X, y, classes, text, scale, alpha):
    """The reference formulas written out with loops in float64 (independent of cliplab.adapt.gda)."""
    X64 = X.astype(np.float64)
    n, d = X64.shape
    means = np.stack([X64[y == c].mean(axis=0) for c in classes])
    Z = np.stack([X64[i] - means[list(classes).index(y[i])] for i in range(n)])
    S = np.cov(Z.T)  # unbiased, centred on the (zero) overall mean, as torch's .cov()
    precision = d * np.linalg.pinv((n - 1) * S + np.trace(S) * np.eye(d))
    W = np.array([precision @ m for m in means])
    b = np.array([np.log(1.0 / len(classes)) - 0.5 * m @ precision @ m for m in means])

    def logits(F):
        return scale * F.astype(np.float64) @ text.T.astype(np.float64) + alpha * (F.astype(np.float64) @ W.T + b)

    return logits


def test_matches_slow_reference(toy):
    head = GDA(toy["text"], logit_scale=100.0, alpha=10.0).fit(toy["X"], toy["y"])
    slow = slow_gda_logits(toy["X"], toy["y"], toy["classes"], toy["text"], 100.0, 10.0)(toy["X_test"])
    fast = head.decision_function(toy["X_test"])
    assert np.array_equal(head.classes_, toy["classes"])
    assert np.array_equal(np.argmax(fast, 1), np.argmax(slow, 1))
    np.testing.assert_allclose(fast, slow, atol=1e-5 * np.abs(slow).max(), rtol=1e-5)


def test_alpha_search_uses_validation_and_grid(toy):
    head = GDA(toy["text"], logit_scale=100.0).fit(toy["X"], toy["y"], toy["X_val"], toy["y_val"])
    assert head.alpha_ in (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
    accs = []
    for a in (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0):
        fixed = GDA(toy["text"], logit_scale=100.0, alpha=a).fit(toy["X"], toy["y"])
        accs.append(fixed.score(toy["X_val"], toy["y_val"]))
    assert head.val_accuracy_ == pytest.approx(max(accs))
    zero_shot = np.mean(toy["classes"][np.argmax(toy["X_test"] @ toy["text"].T, 1)] == toy["y_test"])
    assert head.score(toy["X_test"], toy["y_test"]) > zero_shot + 0.1


@pytest.mark.filterwarnings("ignore::cliplab.validation.NormWarning")
def test_equals_bayes_optimal_lda_on_gaussian_data():
    rng = np.random.default_rng(1)
    d, n_classes = 6, 4
    A = rng.normal(size=(d, d))
    cov = A @ A.T / d + 0.1 * np.eye(d)
    means = rng.normal(size=(n_classes, d)) * 1.2
    L = np.linalg.cholesky(cov)
    y = np.repeat(np.arange(n_classes), 3000)
    X = (means[y] + rng.normal(size=(len(y), d)) @ L.T).astype(np.float32)
    y_test = np.repeat(np.arange(n_classes), 500)
    X_test = (means[y_test] + rng.normal(size=(len(y_test), d)) @ L.T).astype(np.float32)
    P = np.linalg.inv(cov)
    bayes = np.argmax(X_test @ (means @ P).T - 0.5 * np.einsum("cd,de,ce->c", means, P, means), axis=1)
    gda = GDA().fit(X, y).predict(X_test)
    assert np.mean(gda == bayes) > 0.99
