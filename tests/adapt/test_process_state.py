"""Library code leaves the process alone: fitting a head sets no thread count and draws nothing from
the global torch RNG (issue #20 §2)."""

import numpy as np
import pytest
import torch

import cliplab.adapt as adapt

from .test_trained_heads import features_and_labels


@pytest.fixture
def thread_calls(monkeypatch):
    """Every ``torch.set_num_threads`` call made while the test runs (the call still goes through)."""
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n))[1])
    return calls


@pytest.mark.parametrize("make", [
    lambda m: adapt.CoOp(m, n_ctx=2, epochs=2, batch_size=8, val_fraction=0.3),
    lambda m: adapt.CoCoOp(m, epochs=1, batch_size=4),
])  # fmt: skip
def test_prompt_heads_leave_threads_and_global_rng_alone(tiny_model, thread_calls, make):
    _, X, y = features_and_labels(tiny_model, n_per_class=4)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    head = make(tiny_model).fit(X, y)
    head.predict(X)
    assert thread_calls == []
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


def test_trained_one_class_and_tip_f_leave_threads_and_global_rng_alone(toy, thread_calls):
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    adapt.HypOneClass(hidden=(8,), ball_dim=4, epochs=1).fit(toy["X"][:32]).anomaly_score(toy["X_test"][:4])
    adapt.TipAdapterF(text_weights=toy["text"], epochs=1).fit(toy["X"], toy["y"])
    assert thread_calls == []
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)
