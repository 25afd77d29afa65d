"""Generation metrics: CLIPScore, RefCLIPScore, CMMD, Vendi and SCE on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from cliplab.errors import InputError
from cliplab.evaluate.generation import (
    clip_score,
    clip_scores,
    cmmd,
    ref_clip_score,
    ref_clip_scores,
    schur_complement_entropy,
    vendi_score,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_clip_score_by_hand():
    img = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    txt = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])  # cosines 1/sqrt2, -1, 1
    assert clip_scores(img, txt).tolist() == pytest.approx([2.5 / np.sqrt(2), 0.0, 2.5])
    assert clip_score(img, txt) == pytest.approx((2.5 / np.sqrt(2) + 2.5) / 3)
    # torchmetrics' form clamps the mean of 100 * cos instead of each pair
    assert clip_score(img, txt, w=100, clamp="mean") == pytest.approx(100 * (1 / np.sqrt(2) - 1 + 1) / 3)


def test_ref_clip_score_by_hand():
    img = np.array([[1.0, 0.0]])
    cand = np.array([[1.0, 1.0]])  # CLIP-S = 2.5 / sqrt2
    refs = [np.array([[0.0, 1.0], [1.0, 1.0]])]  # best reference cosine = 1
    a, b = 2.5 / np.sqrt(2), 1.0
    assert ref_clip_score(img, cand, refs) == pytest.approx(2 * a * b / (a + b))
    assert ref_clip_scores(img, cand, [np.array([[-1.0, -1.0]])]).tolist() == [0.0]


def test_cmmd_formula_and_invariants():
    rng = np.random.default_rng(0)
    x = _unit(rng.normal(size=(30, 8)))
    y = _unit(rng.normal(size=(20, 8)) + 2.0)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-9)
    # independent computation with an explicit double loop
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * 10.0**2))  # noqa: E731
    mean_k = lambda A, B: np.mean([[k(a, b) for b in B] for a in A])  # noqa: E731
    assert cmmd(x, y) == pytest.approx(1000 * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)))
    assert cmmd(x, y) > cmmd(x, _unit(rng.normal(size=(20, 8)))) > 0


def test_vendi_copies_and_orthogonal():
    v = np.array([[0.3, 0.4, 0.5]])
    assert vendi_score(np.repeat(v, 7, axis=0)) == pytest.approx(1.0)
    assert vendi_score(np.eye(5)) == pytest.approx(5.0)
    # two groups of equal size of identical vectors, orthogonal to each other: 2 effective samples
    assert vendi_score(np.repeat(np.eye(2), 4, axis=0)) == pytest.approx(2.0)


def _primal_sce(y, x, omega, rtol):
    """The reference's primal form: covariances of random Fourier features, S = C_yy - C_xy' C_xx^+ C_xy."""
    def phi(a):
        p = a @ omega
        return np.concatenate([np.cos(p), np.sin(p)], axis=1) / np.sqrt(omega.shape[1])

    fx, fy = phi(x), phi(y)
    n = len(x)
    cxx, cyy, cxy = fx.T @ fx / n, fy.T @ fy / n, fx.T @ fy / n
    dt = cxy.T @ np.linalg.pinv(cxx, rcond=rtol, hermitian=True) @ cxy
    score = lambda lam: float(np.exp(-np.sum(np.clip(lam, 1e-10, None) * np.log(np.clip(lam, 1e-10, None) / np.clip(lam, 1e-10, None).sum()))))  # noqa: E731
    return score(np.linalg.eigvalsh(cyy - dt)), score(np.linalg.eigvalsh(dt))


def test_sce_dual_matches_the_primal_covariance_form():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    sigma, dim = 2.0, 300
    omega = np.random.default_rng(5).normal(0, 1 / sigma, size=(4, dim))
    got = schur_complement_entropy(y, x, sigma=sigma, rff_dim=dim, seed=5, rtol=1e-8)
    img, txt = _primal_sce(y, x, omega, 1e-8)
    assert got.image == pytest.approx(img, rel=1e-3)
    assert got.text == pytest.approx(txt, rel=1e-3)


def test_sce_lower_for_duplicated_than_diverse_samples():
    rng = np.random.default_rng(2)
    prompts = np.repeat(rng.normal(size=(3, 6)), 20, axis=0)  # 3 prompts, 20 images each
    diverse = rng.normal(size=(60, 6))
    duplicated = np.repeat(rng.normal(size=(3, 6)), 20, axis=0)  # one image per prompt, copied
    for kernel in ("rff", "exact"):
        d = schur_complement_entropy(diverse, prompts, sigma=2.0, kernel=kernel)
        u = schur_complement_entropy(duplicated, prompts, sigma=2.0, kernel=kernel)
        assert u.image < 1.01 < 5 < d.image  # copies per prompt leave no diversity beyond the prompt
        # duplicated prompts explain less diversity than distinct ones
        distinct = schur_complement_entropy(diverse, rng.normal(size=(60, 6)), sigma=2.0, kernel=kernel)
        assert d.text < distinct.text


def test_sce_images_fully_explained_by_text():
    x = np.random.default_rng(3).normal(size=(30, 5))
    res = schur_complement_entropy(x, x, sigma=2.0, kernel="exact")  # image = its prompt: nothing left over
    assert res.image == pytest.approx(1.0, abs=1e-3)  # all eigenvalues clamped to ~0
    assert res.text > 5


def test_shapes_are_checked():
    with pytest.raises(InputError):
        clip_score(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(InputError):
        cmmd(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InputError):
        schur_complement_entropy(np.ones((2, 3)), np.ones((2, 3)), kernel="linear")


def test_generation_task_reports_torchmetrics_clipscore(tiny_model, monkeypatch):
    """Six captions point along their image and four against it: torchmetrics' CLIPScore (the mean
    clamped; see test_library_parity) gives 100 * (6 - 4) / 10, the per-pair clamp 100 * 6 / 10."""
    from cliplab.data.images import decode_image
    from cliplab.evaluate.runner import open_dataset
    from cliplab.evaluate.tasks import EmbedOptions, generation

    items = open_dataset("synthetic:10:2").items
    img = tiny_model.encode_images([decode_image(it.read_bytes(), it.id) for it in items])
    captions = [f"caption {i}" for i in range(10)]
    signs = np.array([1.0] * 6 + [-1.0] * 4)[:, None]
    encode_texts = tiny_model.encode_texts
    monkeypatch.setattr(tiny_model, "encode_texts", lambda texts: img * signs if list(texts) == captions else encode_texts(texts))
    res = generation.run_generation(tiny_model, "synthetic:10:2", captions, opts=EmbedOptions(batch_size=16, num_workers=0))
    assert res.metrics["clip_score_100"] == pytest.approx(20.0, abs=1e-3)
    assert res.metrics["clip_score"] == pytest.approx(2.5 * 6 / 10, abs=1e-4)
