import numpy as np
from sklearn.linear_model import LogisticRegression

from cliplab.adapt import LinearProbe, SupportSetAdapter
from cliplab.adapt.support import class_distributions


def test_fixed_c_equals_sklearn(toy):
    head = LinearProbe(C=3.0).fit(toy["X"], toy["y"])
    ref = LogisticRegression(C=3.0, max_iter=1000, tol=1e-8, random_state=0).fit(toy["X"], toy["y"])
    assert np.array_equal(head.predict(toy["X_test"]), ref.predict(toy["X_test"]))
    np.testing.assert_allclose(head.predict_proba(toy["X_test"]), ref.predict_proba(toy["X_test"]), atol=1e-5)


def test_sweep_and_zero_shot_modes(toy):
    swept = LinearProbe(refine_steps=2).fit(toy["X"], toy["y"], toy["X_val"], toy["y_val"])
    assert swept.val_accuracy_ is not None and swept.C_ > 0
    ens = LinearProbe(toy["text"], logit_scale=100.0, zero_shot="ensemble", C=1.0).fit(toy["X"], toy["y"], toy["X_val"], toy["y_val"])
    assert ens.ensemble_weight_ in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    init = LinearProbe(toy["text"], logit_scale=100.0, zero_shot="init", C=1e-6, max_iter=1).fit(toy["X"], toy["y"])
    # with almost no data term and one step, the weights stay near the zero-shot start
    zs = np.argmax(toy["X_test"] @ toy["text"].T, axis=1)
    assert np.mean(np.argmax(init.decision_function(toy["X_test"]), 1) == zs) > 0.9


def test_two_classes_columns_follow_classes(toy):
    mask = np.isin(toy["y"], toy["classes"][:2])
    head = LinearProbe(C=1.0).fit(toy["X"][mask], toy["y"][mask])
    scores = head.class_scores(toy["X"][mask])
    assert scores.shape == (mask.sum(), 2)
    assert np.array_equal(head.classes_[np.argmax(scores, 1)], head.predict(toy["X"][mask]))
    # scikit-learn's binary decision_function: the logit of classes_[1], as LogisticRegression's
    np.testing.assert_allclose(head.decision_function(toy["X"][mask]), scores[:, 1] - scores[:, 0], rtol=1e-6)


def slow_tipx_logits(F, sup, caps, labels, classes, text, scale, alpha, beta, gamma, delta, T=0.5):
    def dist(v):
        z = v.astype(np.float64) @ text.T.astype(np.float64) / T
        e = np.exp(z - z.max())
        return e / e.sum()

    out = np.zeros((len(F), len(classes)))
    for i, f in enumerate(F.astype(np.float64)):
        p = dist(f)
        A = np.array([(1 - delta) * s @ f + delta * c @ f for s, c in zip(sup.astype(np.float64), caps.astype(np.float64))])
        kl = np.array([np.sum(p * (np.log(p + 1e-12) - np.log(dist(s) + 1e-12))) for s in sup])
        kl_s = (kl - kl.min()) / (kl.max() - kl.min()) * (A.max() - A.min()) + A.min()
        out[i] = scale * text.astype(np.float64) @ f
        for j, label in enumerate(labels):
            c = list(classes).index(label)
            out[i, c] += gamma * -kl_s[j] + alpha * np.exp(-beta * (1 - A[j]))
    return out


def test_support_set_matches_slow_tipx(toy):
    rng = np.random.default_rng(4)
    caps = toy["X"] + 0.3 * rng.normal(size=toy["X"].shape).astype(np.float32)
    caps /= np.linalg.norm(caps, axis=1, keepdims=True)
    head = SupportSetAdapter(toy["text"], logit_scale=100.0, alpha=3.0, beta=7.0, gamma=2.0, delta=0.3)
    head.fit(toy["X"], toy["y"], captions=caps)
    slow = slow_tipx_logits(toy["X_test"][:40], toy["X"], caps, toy["y"], toy["classes"], toy["text"], 100.0, 3.0, 7.0, 2.0, 0.3)
    fast = head.decision_function(toy["X_test"][:40])
    assert np.array_equal(np.argmax(fast, 1), np.argmax(slow, 1))
    np.testing.assert_allclose(fast, slow, atol=1e-5 * np.abs(slow).max(), rtol=1e-5)


def test_kl_term_uses_class_distributions_not_feature_dimensions(toy):
    p = class_distributions(toy["X"][:5], toy["text"], 0.5)
    assert p.shape == (5, len(toy["classes"]))  # over classes (10), not the 32 feature dimensions
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_support_search_runs_on_validation(toy):
    head = SupportSetAdapter(toy["text"], logit_scale=100.0, search_step=(5, 10, 4)).fit(toy["X"], toy["y"], toy["X_val"], toy["y_val"])
    assert head.val_accuracy_ is not None and head.delta_ == 0.0
