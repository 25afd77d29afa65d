"""Near-duplicate detection and record linkage (CLIPPINGS-style).

CLIPPINGS (Arora et al., 2023, "Linking Representations with Multimodal Contrastive Learning")
links records by the mean of their image and text embeddings: two records are the same entity
when the cosine of their pooled embeddings passes a threshold. Here:

- ``pooled_embeddings``: ``normalise(w · image + (1 - w) · text)`` per record;
- ``similar_pairs``: every pair with cosine >= threshold (an exact range search);
- ``link``: clusters from those pairs, as connected components (single linkage at the threshold)
  or average-linkage agglomerative clustering (``1 - threshold`` as the cosine distance cut);
- ``pair_scores``: pairwise precision / recall / F1 against known groups (pairs in the same
  predicted cluster versus pairs in the same true group).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cliplab.errors import InputError
from cliplab.search.queries import normalise
from cliplab.validation import check_embeddings

METHODS = ("components", "agglomerative")
AGGLOMERATIVE_MAX = 20_000  # average linkage keeps an n x n distance matrix


@dataclass
class Linkage:
    """Clusters (``labels[i]`` is row i's cluster), the pairs above the threshold, and the groups of 2+."""

    labels: np.ndarray
    pairs: np.ndarray  # (m, 2) row numbers, i < j
    scores: np.ndarray  # (m,) cosine of each pair
    groups: list[list[int]] = field(default_factory=list)


def pooled_embeddings(image: np.ndarray, text: np.ndarray | None = None, text_weight: float = 0.5) -> np.ndarray:
    """``normalise((1 - w) image + w text)`` row by row; the image embeddings alone without text."""
    image = check_embeddings(image, name="image embeddings")
    if text is None or text_weight == 0:
        return normalise(image)
    text = check_embeddings(text, name="text embeddings")
    if text.shape[1] != image.shape[1]:
        raise InputError(f"the text embeddings have {text.shape[1]} dims but the image embeddings {image.shape[1]}; "
                         "embed the captions with the model that embedded the images")
    if len(text) != len(image):
        raise InputError(f"{len(image)} image embeddings but {len(text)} text embeddings; pass one text per record")
    if not 0 <= text_weight <= 1:
        raise InputError(f"text weight {text_weight} must be in [0, 1]")
    return normalise((1 - text_weight) * image + text_weight * text)


def similar_pairs(X: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) with cosine >= ``threshold`` and their cosines, by exact range search."""
    X = check_embeddings(X)
    if not -1 <= threshold <= 1:
        raise InputError(f"threshold {threshold} must be a cosine in [-1, 1]")
    flat = faiss.IndexFlatIP(X.shape[1])
    flat.add(X)
    # range_search keeps scores > radius; nudge the radius so that "=" counts too
    lims, scores, rows = flat.range_search(X, float(np.nextafter(np.float32(threshold), np.float32(-2))))
    counts = np.diff(lims).astype(np.int64)
    i = np.repeat(np.arange(len(X)), counts)
    keep = rows > i
    return np.stack([i[keep], rows[keep]], axis=1).astype(np.int64), scores[keep]


def link(X: np.ndarray, threshold: float = 0.95, method: str = "components") -> Linkage:
    """Cluster the rows of ``X`` (L2-normalised) into linked groups."""
    if method not in METHODS:
        raise InputError(f"method {method!r} is not one of {', '.join(METHODS)}")
    X = check_embeddings(X)
    pairs, scores = similar_pairs(X, threshold)
    n = len(X)
    if method == "components":
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
    else:
        if n > AGGLOMERATIVE_MAX:
            raise InputError(f"agglomerative linking keeps an n x n matrix; {n} records is over {AGGLOMERATIVE_MAX}, use components")
        labels = _agglomerative(X, threshold)
    members: dict[int, list[int]] = {}
    for row, lab in enumerate(labels.tolist()):
        members.setdefault(lab, []).append(row)
    groups = sorted((g for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    return Linkage(labels=np.asarray(labels), pairs=pairs, scores=scores, groups=groups)


def _agglomerative(X: np.ndarray, threshold: float) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if len(X) < 2:
        return np.zeros(len(X), dtype=np.int64)
    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average", distance_threshold=1 - threshold)
    return model.fit_predict(X)


def pair_scores(predicted: Sequence[Any], truth: Sequence[Any]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of a clustering against true groups (None: a record alone).

    Counting pairs from the contingency table: same-cluster-and-same-group pairs are
    Σ C(n_ij, 2); predicted pairs Σ_i C(a_i, 2); true pairs Σ_j C(b_j, 2).
    """
    if len(predicted) != len(truth):
        raise InputError(f"{len(predicted)} predicted labels but {len(truth)} true groups")
    truth = [("__alone__", i) if t is None else ("group", t) for i, t in enumerate(truth)]
    pairs = lambda counts: sum(c * (c - 1) // 2 for c in counts)

    both = pairs(Counter(zip(list(predicted), truth)).values())
    pred = pairs(Counter(list(predicted)).values())
    true = pairs(Counter(truth).values())
    precision = both / pred if pred else 1.0
    recall = both / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "predicted_pairs": pred, "true_pairs": true}
