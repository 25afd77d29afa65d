"""Metrics for generated (or any) images and their captions: CLIPScore, RefCLIPScore, CMMD, Vendi,
and the Schur-complement entropy (SCE) of image features given their prompts.

Inputs are (N, D) embedding arrays; cosine-based metrics L2-normalise rows themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cliplab.errors import InputError

CMMD_SIGMA = 10.0  # google-research/cmmd distance.py: _SIGMA = 10, _SCALE = 1000
CMMD_SCALE = 1000.0


def _matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != 2 or not len(a):
        raise InputError(f"{name} must be a non-empty (N, D) array of embeddings, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} has NaN or inf values")
    return a


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError("an embedding row is all zeros; it has no direction")
    return x / norms


def _paired(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(a, names[0]), _matrix(b, names[1])
    if a.shape != b.shape:
        raise InputError(f"{names[0]} and {names[1]} must be paired row by row, got {a.shape} and {b.shape}")
    return _unit(a), _unit(b)


def clip_scores(image_emb, text_emb, w: float = 2.5) -> np.ndarray:
    """Per pair: w * max(cos(image_i, text_i), 0) (Hessel et al., "CLIPScore", 2021, eq. 1)."""
    img, txt = _paired(image_emb, text_emb, ("image_emb", "text_emb"))
    return w * np.maximum(np.sum(img * txt, axis=1), 0.0)


def clip_score(image_emb, text_emb, w: float = 2.5, clamp: str = "pair") -> float:
    """CLIPScore averaged over pairs. ``clamp="pair"`` (Hessel et al.): mean of w * max(cos, 0).
    ``clamp="mean"`` is torchmetrics' CLIPScore with w = 100: max(mean of w * cos, 0) (torchmetrics
    1.x, multimodal/clip_score.py: ``update`` sums 100 * cos, ``compute`` returns
    ``max(score / n_samples, 0)``). The two agree whenever no pair has a negative cosine."""
    if clamp == "pair":
        return float(np.mean(clip_scores(image_emb, text_emb, w)))
    if clamp == "mean":
        img, txt = _paired(image_emb, text_emb, ("image_emb", "text_emb"))
        return float(max(np.mean(w * np.sum(img * txt, axis=1)), 0.0))
    raise InputError(f"clamp must be 'pair' or 'mean', got {clamp!r}")


def ref_clip_scores(image_emb, text_emb, references: Sequence, w: float = 2.5) -> np.ndarray:
    """Per pair: the harmonic mean of CLIP-S(c, v) = w * max(cos(c, v), 0) and the best reference
    similarity max(max_r cos(c, r), 0) (Hessel et al. 2021, eq. 2; 0 when either is 0).
    ``references[i]``: an (R_i, D) array of reference-caption embeddings of pair i."""
    img, txt = _paired(image_emb, text_emb, ("image_emb", "text_emb"))
    if len(references) != len(txt):
        raise InputError(f"need one set of references per caption, got {len(references)} for {len(txt)}")
    image_part = w * np.maximum(np.sum(img * txt, axis=1), 0.0)
    ref_part = np.array([max(float(np.max(_unit(_matrix(r, "references")) @ c)), 0.0) for r, c in zip(references, txt)])
    total = image_part + ref_part
    return np.divide(2 * image_part * ref_part, total, out=np.zeros_like(total), where=total > 0)


def ref_clip_score(image_emb, text_emb, references: Sequence, w: float = 2.5) -> float:
    """RefCLIPScore averaged over pairs (see ``ref_clip_scores``)."""
    return float(np.mean(ref_clip_scores(image_emb, text_emb, references, w)))


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T, 0.0)


def cmmd(x, y, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """CMMD (Jayasumana et al., "Rethinking FID", 2024) as google-research/cmmd computes it: squared
    MMD with the Gaussian kernel exp(-||a - b||^2 / (2 sigma^2)), each term the mean over the full
    kernel matrix (diagonal included), times ``scale``. ``x``, ``y``: (N, D), (M, D) embeddings."""
    x, y = _matrix(x, "x"), _matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise InputError(f"x and y must have the same width, got {x.shape[1]} and {y.shape[1]}")
    gamma = 1.0 / (2 * sigma**2)
    k = lambda a, b: float(np.mean(np.exp(-gamma * _sq_dists(a, b))))  # noqa: E731
    return scale * (k(x, x) + k(y, y) - 2 * k(x, y))


def _entropy_exp(eigenvalues: np.ndarray) -> float:
    """exp(-sum_i p_i log p_i) of eigenvalues normalised to sum 1 (order-1 Vendi / von Neumann)."""
    lam = np.clip(eigenvalues, 0.0, None)
    p = lam[lam > 0] / lam.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def vendi_score(x) -> float:
    """Vendi score with the cosine kernel (Friedman & Dieng, 2023): exp of the entropy of the
    eigenvalues of K / n, K_ij = cos(x_i, x_j). 1 for n copies of one sample, n for n orthogonal ones."""
    u = _unit(_matrix(x, "x"))
    return _entropy_exp(np.linalg.eigvalsh(u @ u.T / len(u)))


@dataclass
class SchurEntropy:
    """SCE of images given their prompts: ``image`` scores the part of the image kernel the prompts do
    not explain (the "generator" diversity), ``text`` the part they explain (the prompt diversity)."""

    image: float
    text: float


def _rff_gram(a: np.ndarray, omega: np.ndarray) -> np.ndarray:
    proj = a @ omega
    phi = np.concatenate([np.cos(proj), np.sin(proj)], axis=1) / np.sqrt(omega.shape[1])  # ||phi|| = 1
    return phi @ phi.T


def _sce_weights(eigenvalues: np.ndarray) -> float:
    """exp(-sum_i l_i log(l_i / sum_j l_j)), eigenvalues clamped to >= 1e-10: the outer weights are
    the raw l_i (their total over both parts is 1), only the log's argument is normalised."""
    lam = np.clip(eigenvalues, 1e-10, None)
    return float(np.exp(-np.sum(lam * np.log(lam / lam.sum()))))


def schur_complement_entropy(
    image_features,
    text_features,
    sigma: float = 3.5,
    kernel: str = "rff",
    rff_dim: int = 2500,
    seed: int = 0,
    rtol: float = 6e-4,
) -> SchurEntropy:
    """Schur-complement entropy ("Dissecting CLIP", Ospanov et al.; see the reference notes, item j).

    With n paired samples (text x_i, image y_i), Gaussian-kernel feature maps phi and covariances
    C = Phi^T Phi / n, the image covariance splits as C_yy = S + D_t with
    D_t = C_xy^T C_xx^+ C_xy (explained by the text) and S the Schur complement. Scores are
    exp(-sum l log(l / sum l)) over the eigenvalues of S (``image``) and D_t (``text``).

    kernel: ``rff`` (the reference's random Fourier features, ``rff_dim`` frequencies, omega ~
    N(0, sigma^-2 I) shared by both modalities, seeded) or ``exact`` (the Gaussian kernel itself).
    Computed in the n x n dual: D_t has the non-zero eigenvalues of P G_y P and S those of
    (I - P) G_y (I - P), where G = Phi Phi^T / n and P projects onto the range of G_x
    (eigenvalues above ``rtol`` times the largest; this plays the role of the reference's
    regularised pseudo-inverse, and the default is torch.linalg.pinv's float32 cut-off
    eps * max(m, n) at the reference's 2 * 2500 features, an inference from its defaults).
    With one distinct prompt per image the prompts can explain nearly all of the image kernel;
    the image part is most telling with several images per prompt. The reference applies it to unnormalised ViT-B/32 features with
    sigma = 3.5; for unit-length embeddings a sigma near 0.5 keeps the kernel informative.
    """
    y, x = _paired_raw(image_features, text_features)
    n = len(x)
    if kernel == "rff":
        omega = np.random.default_rng(seed).normal(0.0, 1.0 / sigma, size=(x.shape[1], rff_dim))
        gx, gy = _rff_gram(x, omega) / n, _rff_gram(y, omega) / n
    elif kernel == "exact":
        gx = np.exp(-_sq_dists(x, x) / (2 * sigma**2)) / n
        gy = np.exp(-_sq_dists(y, y) / (2 * sigma**2)) / n
    else:
        raise InputError(f"kernel must be 'rff' or 'exact', got {kernel!r}")
    lam_x, vec_x = np.linalg.eigh(gx)
    basis = vec_x[:, lam_x > rtol * lam_x.max()]
    projection = basis @ basis.T
    rest = np.eye(n) - projection
    explained = np.linalg.eigvalsh(projection @ gy @ projection)
    complement = np.linalg.eigvalsh(rest @ gy @ rest)
    return SchurEntropy(image=_sce_weights(complement), text=_sce_weights(explained))


def _paired_raw(image_features, text_features) -> tuple[np.ndarray, np.ndarray]:
    y, x = _matrix(image_features, "image_features"), _matrix(text_features, "text_features")
    if len(x) != len(y) or x.shape[1] != y.shape[1]:
        raise InputError(f"image and text features must be paired and of equal width, got {y.shape} and {x.shape}")
    return y, x
