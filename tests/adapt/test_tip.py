import itertools

import numpy as np
import pytest

from cliplab.adapt import TipAdapter, TipAdapterF
from cliplab.adapt.search import reference_grid


def slow_tip_logits(F, keys, key_labels, classes, text, scale, alpha, beta):
    """Tip-Adapter's logits with explicit loops over cache entries, in float64."""
    out = np.zeros((len(F), len(classes)))
    for i, f in enumerate(F.astype(np.float64)):
        out[i] = scale * (text.astype(np.float64) @ f)
        for key, label in zip(keys.astype(np.float64), key_labels):
            out[i, list(classes).index(label)] += alpha * np.exp(-beta * (1.0 - key @ f))
    return out


def test_matches_slow_reference(toy):
    head = TipAdapter(toy["text"], logit_scale=100.0, alpha=2.0, beta=5.5).fit(toy["X"], toy["y"])
    slow = slow_tip_logits(toy["X_test"], toy["X"], toy["y"], toy["classes"], toy["text"], 100.0, 2.0, 5.5)
    fast = head.decision_function(toy["X_test"])
    assert np.array_equal(np.argmax(fast, 1), np.argmax(slow, 1))
    np.testing.assert_allclose(fast, slow, atol=1e-5 * np.abs(slow).max(), rtol=1e-5)


def test_alpha_zero_is_zero_shot(toy):
    head = TipAdapter(toy["text"], logit_scale=50.0, alpha=0.0, beta=3.0).fit(toy["X"], toy["y"])
    zero_shot = 50.0 * toy["X_test"] @ toy["text"].T
    np.testing.assert_allclose(head.decision_function(toy["X_test"]), zero_shot, rtol=1e-6, atol=1e-5)
    assert np.array_equal(head.predict(toy["X_test"]), toy["classes"][np.argmax(zero_shot, 1)])


def test_search_equals_brute_force_grid(toy):
    """The interval search finds the same best validation accuracy as scoring every grid point."""
    head = TipAdapter(toy["text"], logit_scale=100.0, search_scale=(7, 3), search_step=(20, 10))
    head.fit(toy["X"], toy["y"], toy["X_val"], toy["y_val"])
    best = 0.0
    for beta, alpha in itertools.product(reference_grid(7, 20, 0.1), reference_grid(3, 10, 0.1)):
        fixed = TipAdapter(toy["text"], logit_scale=100.0, alpha=alpha, beta=beta).fit(toy["X"], toy["y"])
        best = max(best, fixed.score(toy["X_val"], toy["y_val"]))
    assert head.val_accuracy_ == pytest.approx(best)
    chosen = TipAdapter(toy["text"], logit_scale=100.0, alpha=head.alpha_, beta=head.beta_).fit(toy["X"], toy["y"])
    assert chosen.score(toy["X_val"], toy["y_val"]) == pytest.approx(best)


def test_carved_validation_never_touches_test(toy):
    head = TipAdapter(toy["text"], logit_scale=100.0, search_step=(10, 5)).fit(toy["X"], toy["y"])
    assert len(head.cache_keys_) == len(toy["X"])  # the carved rows return to the cache
    assert head.val_accuracy_ is not None


def test_tip_f_trains_keys_and_keeps_best_validation_epoch(toy):
    head = TipAdapterF(toy["text"], logit_scale=100.0, epochs=4, search_step=(10, 5), lr=1e-2)
    head.fit(toy["X"], toy["y"], toy["X_val"], toy["y_val"])
    assert head.cache_keys_.shape == toy["X"].shape
    assert 0 <= head.best_epoch_ <= head.epochs_run_ <= 4
    if head.best_epoch_:
        assert not np.allclose(head.cache_keys_, toy["X"])
    assert head.score(toy["X_test"], toy["y_test"]) > 0.5


@pytest.mark.parametrize("noise", [0.4, 1.5])
def test_pruned_grid_equals_every_grid_point(noise):
    """The grid search scores only the competing classes; its whole accuracy grid still equals an
    argmax over all classes at every (alpha, beta), on data where most classes are pruned."""
    from cliplab.adapt.search import (
        ClassPaddedKeys,
        cache_logits_over_betas,
        competing_classes,
        grid_accuracy,
    )

    rng = np.random.default_rng(3)
    n_classes, shots, dim = 60, 3, 24
    means = rng.normal(size=(n_classes, dim))

    def unit(a):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    keys = unit(np.repeat(means, shots, 0) + noise * rng.normal(size=(n_classes * shots, dim)))
    key_y = np.repeat(np.arange(n_classes), shots)
    keys, key_y = keys[:-1], key_y[:-1]  # one class short of a key: padding is exercised too
    Xv = unit(np.repeat(means, 4, 0) + noise * rng.normal(size=(n_classes * 4, dim)))
    yv = np.repeat(np.arange(n_classes), 4)
    Z = 30.0 * Xv @ unit(means + noise * rng.normal(size=means.shape)).T
    betas, alphas = reference_grid(7, 25, 0.1), reference_grid(3, 12, 0.1)
    A = ClassPaddedKeys(keys, key_y, n_classes).affinity(Xv)
    acc = grid_accuracy(Z, A, yv, alphas, betas)
    affinity = (Xv @ keys.T).astype(np.float64)
    for b, beta in enumerate(betas):
        cache = np.stack([np.exp(-beta * (1 - affinity[:, key_y == c])).sum(1) for c in range(n_classes)], 1)
        for a, alpha in enumerate(alphas):
            assert acc[b, a] == np.mean(np.argmax(Z + alpha * cache, 1) == yv), (beta, alpha)
    true_cache = np.stack(list(cache_logits_over_betas(A[np.arange(len(yv)), yv], betas)))
    assert competing_classes(Z, A, yv, alphas, betas, true_cache).mean() < 0.5
