"""Which FAISS index a collection gets, from its size and a memory budget.

The rules follow autofaiss's ``get_optimal_index_keys_v2`` and the FAISS wiki's
"Guidelines to choose an index" (reference: dense_and_retrieval.md, B.4), with one change for
the machines cliplab targets:

1. fewer than ``EXACT_BELOW`` vectors: ``Flat`` (exact search; nothing to tune);
2. HNSW when its graph fits the budget, ``M = floor((budget / (4 n) - d) / 2) >= 8``, capped at 32,
   and the collection is below ``HNSW_BELOW`` vectors and no memory-mapped index was asked for;
   autofaiss stops only at the memory test, but building an HNSW graph is the slowest build here
   (measured on 2 cores, see benchmarks/search.py), and only IVF indexes memory-map;
3. ``IVF{c},Flat`` when the raw vectors fit the budget, ``c = 2^round(log2(4 sqrt(n)))``, the
   wiki's rule below 1M, kept beyond it (4096 lists at 1M, 16384 at 16M) where the wiki moves to
   16384-65536: training 16384 centroids takes ~4x longer and pays off only with many cores;
4. otherwise ``OPQ{m}_{y},IVF{c}_HNSW32,PQ{m}x8`` (plain ``IVF{c}`` below 1000 lists), with ``m``
   the largest of 256, 128, 64, 48, 32, 24, 16, 8, 4 whose codes fit the budget and divide ``d``,
   and ``y = (min(d // m, 6) + 1) * m`` rounded down to a multiple of ``m`` no larger than ``d``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cliplab.errors import InputError

EXACT_BELOW = 10_000
HNSW_BELOW = 100_000
PQ_CHOICES = (256, 128, 64, 48, 32, 24, 16, 8, 4)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class IndexPlan:
    """A FAISS factory string and what it is: ``kind`` is flat | hnsw | ivf_flat | ivf_pq."""

    key: str
    kind: str
    estimated_bytes: int


def parse_bytes(text: str | int | float, what: str = "memory budget") -> int:
    """'4GB' -> 4_000_000_000, '512MiB' -> 536870912, 1e9 -> 1_000_000_000."""
    if isinstance(text, (int, float)):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise InputError(f"{what} {text!r} is not a size; write e.g. 4GB, 512MB or 2GiB")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise InputError(f"{what} {text!r} must be positive")
    return value


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: 2^round(log2(4 sqrt n)), at most 65536 (FAISS wiki)."""
    return min(65_536, max(1, 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))))


def plan_index(n: int, d: int, budget_bytes: int, *, mmap: bool = False) -> IndexPlan:
    """The index for ``n`` vectors of ``d`` dims within ``budget_bytes`` (see the module docstring)."""
    if n < 1 or d < 1:
        raise InputError(f"cannot index {n} vectors of {d} dims; embed some images first")
    raw = 4 * n * d
    if n < EXACT_BELOW and not mmap:
        return IndexPlan("Flat", "flat", raw)
    m_hnsw = math.floor((budget_bytes / (4 * n) - d) / 2)
    if not mmap and n < HNSW_BELOW and m_hnsw >= 8:
        m = min(m_hnsw, 32)
        return IndexPlan(f"HNSW{m},Flat", "hnsw", raw + 2 * 4 * m * n)
    c = ivf_lists(n)
    ivf_flat = raw + 8 * n + 4 * c * d
    if ivf_flat <= budget_bytes:
        return IndexPlan(f"IVF{c},Flat", "ivf_flat", ivf_flat)
    for m in PQ_CHOICES:
        if d % m:
            continue
        y = min((min(d // m, 6) + 1) * m, d // m * m)
        size = (m + 8) * n + 4 * c * y + 4 * d * y
        if size <= budget_bytes:
            coarse = f"IVF{c}_HNSW32" if c >= 1000 else f"IVF{c}"
            return IndexPlan(f"OPQ{m}_{y},{coarse},PQ{m}x8", "ivf_pq", size)
    raise InputError(f"{n} vectors of {d} dims do not fit a {budget_bytes} byte budget even as 4-byte codes; raise --memory-budget")
