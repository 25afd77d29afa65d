"""Classification and retrieval metrics with CLIP_benchmark's definitions, as pure numpy functions.

Labels are integer class indices (class names are accepted where ``classnames`` is given).
Ties are broken deterministically towards the lower index, exactly like ``np.argmax`` and a stable
descending sort: when scores are equal, the item with the smaller class / image / text index
ranks first. So ``acc1`` always equals the accuracy of ``argmax`` predictions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cliplab.errors import InputError

_MAX_BLOCK = 1 << 24  # score-matrix elements per retrieval batch (64 MiB of float32)


def _check_logits(logits, y) -> tuple[np.ndarray, np.ndarray]:
    logits, y = np.asarray(logits), np.asarray(y)
    if logits.ndim != 2 or y.ndim != 1 or len(y) != len(logits):
        raise InputError(f"expected logits (N, C) and labels (N,), got {logits.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= logits.shape[1]):
        raise InputError(f"labels must be class indices in [0, {logits.shape[1]})")
    return logits, y.astype(np.int64)


def _ranks(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of column ``target[i]`` in row i when sorted by score descending, ties by index."""
    rows = np.arange(len(scores))
    s = scores[rows, target][:, None]
    idx = np.arange(scores.shape[1])
    return (scores > s).sum(1) + ((scores == s) & (idx < target[:, None])).sum(1)


def accuracy_at_k(logits, y, k: int) -> float:
    """Top-k accuracy: fraction of samples whose true class is among the k highest logits."""
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    logits, y = _check_logits(logits, y)
    return float(np.mean(_ranks(logits, y) < k)) if len(y) else float("nan")


def topk_accuracies(logits, y, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"acc1": ..., "acc5": ...}``. acc@k for k >= number of classes is trivially 1 and is
    omitted (CLIP_benchmark instead reports acc5 = nan below 5 classes); acc1 is always given."""
    n_classes = np.shape(logits)[1]
    return {f"acc{k}": accuracy_at_k(logits, y, k) for k in ks if k == 1 or k < n_classes}


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts; entry [i, j] = samples of true class i predicted as j (sklearn layout)."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise InputError(f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} and {y_pred.shape}")
    for a in (y_true, y_pred):
        if len(a) and (a.min() < 0 or a.max() >= n_classes):
            raise InputError(f"labels must be class indices in [0, {n_classes})")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def mean_per_class_recall(y_true, y_pred) -> float:
    """Mean over the classes present in ``y_true`` of recall = TP / (TP + FN); equal to sklearn's
    ``balanced_accuracy_score`` (CLIP_benchmark's ``mean_per_class_recall``)."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if not len(y_true):
        return float("nan")
    n = int(max(y_true.max(), y_pred.max())) + 1
    cm = confusion_matrix(y_true, y_pred, n)
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def per_class_precision_recall(y_true, y_pred, classnames: Sequence[str] | int) -> dict:
    """``{class: {"precision", "recall", "f1", "support"}}``. precision = TP / predicted,
    recall = TP / support, f1 their harmonic mean; an undefined ratio (0/0) is 0.0, as sklearn's
    ``precision_recall_fscore_support`` returns by default. An int gives keys 0..n-1."""
    names = list(range(classnames)) if isinstance(classnames, int) else list(classnames)
    cm = confusion_matrix(y_true, y_pred, len(names))
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    }


def classification_metrics(logits, y, classnames: Sequence[str]) -> dict:
    """CLIP_benchmark's zero-shot classification fields: ``acc1``, ``acc5`` (when there are more
    than 5 classes), ``mean_per_class_recall``, plus ``per_class`` precision/recall/f1/support.
    ``y`` may hold class indices or class names."""
    classnames = list(classnames)
    y = np.asarray(y)
    if y.dtype.kind in "USO":
        index = {c: i for i, c in enumerate(classnames)}
        unknown = sorted({str(v) for v in y.tolist()} - set(index))
        if unknown:
            raise InputError(f"{len(unknown)} labels are not class names, e.g. {unknown[:3]}")
        y = np.array([index[v] for v in y.tolist()], dtype=np.int64)
    logits, y = _check_logits(logits, y)
    if logits.shape[1] != len(classnames):
        raise InputError(f"logits have {logits.shape[1]} columns but {len(classnames)} class names were given")
    pred = np.argmax(logits, axis=1)
    return {
        **topk_accuracies(logits, y, (1, 5)),
        "mean_per_class_recall": mean_per_class_recall(y, pred),
        "per_class": per_class_precision_recall(y, pred, classnames),
    }


def _batches(n_rows: int, n_cols: int, batch_size: int | None):
    step = batch_size or max(1, _MAX_BLOCK // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def retrieval_metrics(image_emb, text_emb, text_to_image, ks: Sequence[int] = (1, 5, 10),
                      batch_size: int | None = None) -> dict[str, float]:
    """Recall@k for zero-shot retrieval, CLIP_benchmark definitions (scores = cosine similarity).

    Text i is a caption of image ``text_to_image[i]``; an image may have several captions.
    - ``image_retrieval_recall@k``: over text queries, a hit when the text's image is in the top k.
    - ``text_retrieval_recall@k``: over image queries, a hit when any of its captions is in the top
      k ("recall > 0" as in CLIP-like papers). Images without captions are not queries here (in
      CLIP_benchmark they would count as misses).
    Score blocks of at most ``batch_size`` query rows (default: ~16M scores) are computed at a
    time, so an all-pairs matrix never materialises. Ties rank the lower index first.
    """
    img, txt = np.asarray(image_emb, np.float32), np.asarray(text_emb, np.float32)
    t2i = np.asarray(text_to_image, np.int64)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise InputError(f"expected image (N, D) and text (T, D) embeddings, got {img.shape} and {txt.shape}")
    if t2i.shape != (len(txt),) or (len(t2i) and (t2i.min() < 0 or t2i.max() >= len(img))):
        raise InputError(f"text_to_image must hold one image index in [0, {len(img)}) per text")
    if any(k < 1 for k in ks):
        raise InputError(f"every k must be >= 1, got {list(ks)}")

    # Text queries -> images: rank of the one matching image.
    text_ranks = np.concatenate(
        [_ranks(txt[b] @ img.T, t2i[b]) for b in _batches(len(txt), len(img), batch_size)] or [np.zeros(0, np.int64)]
    )
    # Image queries -> texts: rank of the best-ranked caption (top-k holds a caption iff it does).
    queries = np.unique(t2i)
    image_ranks = []
    for b in _batches(len(queries), len(txt), batch_size):
        q = queries[b]
        scores = img[q] @ txt.T
        masked = np.where(t2i[None, :] == q[:, None], scores, -np.inf)
        best = np.argmax(masked, axis=1)  # highest-scoring caption, lowest index among equals
        image_ranks.append(_ranks(scores, best))
    image_ranks = np.concatenate(image_ranks) if image_ranks else np.zeros(0, np.int64)

    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = float(np.mean(text_ranks < k)) if len(text_ranks) else float("nan")
        out[f"text_retrieval_recall@{k}"] = float(np.mean(image_ranks < k)) if len(image_ranks) else float("nan")
    return out
