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
