"""Out-of-distribution detection: scores from a classifier's outputs and how well they separate.

Every score is "higher = more in-distribution". ``auroc``, ``aupr`` and ``fpr_at_tpr`` take the
scores of in-distribution samples (the positives) and of OOD samples.
"""

from __future__ import annotations

import numpy as np

from cliplab.errors import InputError

SCORES = ("msp", "maxlogit", "energy", "mcm")


def _logits(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or z.shape[1] < 1:
        raise InputError(f"expected logits (N, C), got shape {z.shape}")
    return z


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(1)
    return m + np.log(np.exp(z - m[:, None]).sum(1))


def msp(logits) -> np.ndarray:
    """Maximum softmax probability (Hendrycks & Gimpel, 2017)."""
    z = _logits(logits)
    return np.exp(z.max(1) - _logsumexp(z))


def max_logit(logits) -> np.ndarray:
    """The largest logit (Hendrycks et al., "Scaling OOD detection", 2022)."""
    return _logits(logits).max(1)


def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T * logsumexp(logits / T) (Liu et al., "Energy-based OOD detection", 2020, eq. 7)."""
    z = _logits(logits)
    return temperature * _logsumexp(z / temperature)


def mcm(cosines, temperature: float = 1.0) -> np.ndarray:
    """Maximum concept matching: max_i softmax(cos / tau)_i over the in-distribution class prompts
    (Ming et al., "Delving into OOD detection with vision-language representations", 2022, eq. 4;
    tau = 1 as in the paper). ``cosines``: (N, C) cosine similarities of image and class embeddings."""
    return msp(np.asarray(cosines, np.float64) / temperature)


def _pair(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(scores_in, np.float64).ravel(), np.asarray(scores_out, np.float64).ravel()
    if not len(a) or not len(b):
        raise InputError(f"need in-distribution and OOD scores, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("OOD scores must be finite")
    return a, b


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve with in-distribution as positive: P(s_in > s_out) + P(s_in = s_out) / 2
    (the Mann-Whitney U statistic over n_in * n_out, ties counted half)."""
    a, b = _pair(scores_in, scores_out)
    b_sorted = np.sort(b)
    below = np.searchsorted(b_sorted, a, side="left")
    ties = np.searchsorted(b_sorted, a, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(a) * len(b)))


def aupr(scores_in, scores_out) -> float:
    """Area under the precision-recall curve with in-distribution as positive ("AUPR-In"), as
    average precision: sum over thresholds of (R_k - R_{k-1}) * P_k, one threshold per distinct score."""
    a, b = _pair(scores_in, scores_out)
    s = np.concatenate([a, b])
    pos = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last_of_score = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # ties share one threshold
    tp = np.cumsum(pos)[last_of_score]
    predicted = last_of_score + 1
    recall = tp / len(a)
    precision = tp / predicted
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


FPR_CONVENTIONS = ("roc", "rank")


def fpr_at_tpr(scores_in, scores_out, tpr: float = 0.95, convention: str = "roc") -> float:
    """Fraction of OOD samples accepted when ``tpr`` of the in-distribution samples (the positives) are.

    ``convention="roc"`` (the form of OOD benchmark code, e.g. UB-GOLD's GAOOD/metric/metric.py
    ``fpr95``): ``sklearn.metrics.roc_curve(is_in, scores)`` with its defaults, then the FPR of the
    first ROC point whose TPR is >= ``tpr``. roc_curve drops points collinear with their neighbours, so on small sets
    with ties this can land on a later point than ``"rank"``.
    ``convention="rank"``: the threshold is the ceil(tpr * n_in)-th largest in-distribution score and the
    FPR is the fraction of OOD scores >= it (every ROC point kept).
    """
    if not 0 < tpr <= 1:
        raise InputError(f"tpr must be in (0, 1], got {tpr}")
    a, b = _pair(scores_in, scores_out)
    if convention == "roc":
        from sklearn.metrics import roc_curve

        fprs, tprs, _ = roc_curve(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b])
        return float(fprs[np.argmax(tprs >= tpr)])
    if convention == "rank":
        k = int(np.ceil(tpr * len(a) - 1e-9))
        threshold = np.sort(a)[::-1][k - 1]
        return float(np.mean(b >= threshold))
    raise InputError(f"convention must be one of {', '.join(FPR_CONVENTIONS)}, got {convention!r}")


def detection_metrics(scores_in, scores_out, prefix: str = "") -> dict[str, float]:
    """``{"<prefix>auroc", "<prefix>aupr", "<prefix>fpr95"}``."""
    return {
        f"{prefix}auroc": auroc(scores_in, scores_out),
        f"{prefix}aupr": aupr(scores_in, scores_out),
        f"{prefix}fpr95": fpr_at_tpr(scores_in, scores_out, 0.95),
    }


def ood_scores(cosines, logit_scale: float, mcm_temperature: float = 1.0) -> dict[str, np.ndarray]:
    """Every score of ``SCORES`` from (N, C) image-to-class-prompt cosines; logits = logit_scale * cosines."""
    cos = np.asarray(cosines, np.float64)
    logits = logit_scale * cos
    return {"msp": msp(logits), "maxlogit": max_logit(logits), "energy": energy(logits), "mcm": mcm(cos, mcm_temperature)}
