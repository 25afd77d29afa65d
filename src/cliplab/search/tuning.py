"""Tuning an approximate index's search effort to a target recall on held-out queries.

recall@k of a query = |approximate top-k ∩ exact top-k| / k, averaged over the queries. The effort
knob is ``nprobe`` for IVF indexes (with ``efSearch = 2 nprobe`` for an HNSW coarse quantiser, as
autofaiss does) and ``efSearch`` for HNSW; the smallest value reaching the target is found by
bisection over integers, since recall grows (almost) monotonically with effort.

The tuning queries are a sample, so their mean recall is itself uncertain (a few hundred queries give
a standard error near 0.01). An effort counts as reaching the target only when the one-sided 95%
lower bound of that mean does (mean - 1.645 * standard error), so unseen queries meet the target too.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

Z_ONE_SIDED_95 = 1.645


def per_query_recall(found: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|found_i ∩ exact_i| / k for each row (ids below 0 in ``found`` are misses)."""
    k = exact.shape[1]
    return np.array([len(set(f[f >= 0].tolist()) & set(e.tolist())) / k for f, e in zip(found, exact)], dtype=np.float64)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean |found_i ∩ exact_i| / k over rows (ids below 0 in ``found`` are misses)."""
    return float(per_query_recall(found, exact).mean()) if len(exact) else 1.0


def recall_lower_bound(per_query: np.ndarray) -> float:
    """One-sided 95% lower bound of the mean recall over the sampled queries."""
    if len(per_query) < 2:
        return float(per_query.mean()) if len(per_query) else 1.0
    return float(per_query.mean() - Z_ONE_SIDED_95 * per_query.std(ddof=1) / np.sqrt(len(per_query)))


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the exact top-k inner products, by brute force (FAISS flat)."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)[1]


def effort_knob(index: faiss.Index) -> tuple[str, int] | None:
    """('nprobe', max) or ('efSearch', max) for the index's search knob; None for exact indexes."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        return "nprobe", int(ivf.nlist)
    if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        return "efSearch", 4096
    return None


def set_effort(index: faiss.Index, value: int) -> None:
    """Set the index's search effort (nprobe, or efSearch) to ``value``."""
    knob = effort_knob(index)
    if knob is None:
        return
    if knob[0] == "nprobe":
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = int(value)
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            quantizer.hnsw.efSearch = max(16, 2 * int(value))
    else:
        faiss.downcast_index(index).hnsw.efSearch = int(value)


def tune_effort(
    index: faiss.Index,
    queries: np.ndarray,
    exact: np.ndarray,
    target_recall: float,
    search: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> tuple[int | None, float]:
    """Smallest effort whose recall@k (k = exact.shape[1]) reaches ``target_recall`` with 95%
    confidence (its lower bound does); returns (effort, mean recall on the tuning queries).

    When even the largest effort falls short, that effort and its recall are returned.
    """
    k = exact.shape[1]
    search = search or (lambda q, kk: index.search(q, kk)[1])
    knob = effort_knob(index)
    if knob is None:
        return None, recall_at_k(search(queries, k), exact)
    name, top = knob
    low = k if name == "efSearch" else 1
    measured: dict[int, float] = {}
    bounds: dict[int, float] = {}

    def recall(value: int) -> float:
        """The lower bound at ``value`` (what is compared with the target); the mean goes to ``measured``."""
        if value not in bounds:
            set_effort(index, value)
            per_query = per_query_recall(search(queries, k), exact)
            measured[value] = float(per_query.mean()) if len(per_query) else 1.0
            bounds[value] = recall_lower_bound(per_query)
        return bounds[value]

    # double until the target is met, then bisect between the last miss and the first hit
    hi = low
    while recall(hi) < target_recall and hi < top:
        hi = min(2 * hi, top)
    if recall(hi) < target_recall:
        return hi, measured[hi]
    lo = max(low, hi // 2)
    if lo == hi or recall(lo) >= target_recall:
        best = lo
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if recall(mid) >= target_recall:
                hi = mid
            else:
                lo = mid
        best = hi
    set_effort(index, best)
    return best, measured[best]
