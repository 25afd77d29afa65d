"""Search benchmark: index types on clustered vectors, and the service under a bounded load.

    python benchmarks/search.py [--n 1000000] [--dim 512] [--types flat,ivf_flat,ivf_pq] [--budget 4GB] [--json FILE]

For each index type: build seconds, index bytes, recall@10 against exact search on held-out
queries (drawn from the same clusters, not in the collection), and single-query latency p50/p99
through ``SearchIndex.search`` (metadata join included), with the latency ratio against exact
search (the baseline). Then the default choice (``plan_index`` for the budget) is served on
127.0.0.1 and swept over concurrent clients (a fixed number of requests each), reporting the
queries/s at the highest load whose p99 stays within 100 ms.
The last line is: default index: recall@10 R, p50 P ms, p99 Q ms, N vectors
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from _machine import add_json_option, print_machine, write_json

if TYPE_CHECKING:
    from cliplab.search.index import SearchIndex


def clustered(n: int, d: int, clusters: int, seed: int, spread: float = 0.6) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` random centres (made in blocks to bound memory)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, m)] + spread / np.sqrt(d) * rng.standard_normal((m, d)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def single_query_latency(index: SearchIndex, queries: np.ndarray, k: int = 10) -> tuple[float, float]:
    """One query at a time on one FAISS thread (as the service runs them: concurrency comes from requests)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], k)
        times.append(1e3 * (time.perf_counter() - t))
    faiss.omp_set_num_threads(threads)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def index_key(kind: str, n: int, d: int, budget: int) -> str:
    from cliplab.search.sizing import plan_index

    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return "HNSW32,Flat"
    if kind == "ivf_flat":
        return plan_index(n, d, 10**15, mmap=True).key
    if kind == "ivf_pq":  # the compressed choice: what plan_index picks when the vectors get ~1/8 of their size
        return plan_index(n, d, n * d // 2, mmap=True).key
    raise SystemExit(f"unknown index type {kind!r}; use flat, hnsw, ivf_flat, ivf_pq")


def server_sweep(index: SearchIndex, queries: np.ndarray, clients_list: list[int], requests: int) -> dict | None:
    """Serve ``index`` and sweep the loads; the best load whose p99 stays within 100 ms, as figures (None: none did)."""
    import faiss

    from cliplab.search.loadtest import load_test, running_server
    from cliplab.search.service import create_app

    app = create_app(index, model=None)
    faiss.omp_set_num_threads(1)
    payloads = [{"embedding": q.tolist(), "k": 10} for q in queries[:100]]
    best = None
    with running_server(app) as url:
        load_test(url, payloads[:10], clients=1, requests=10)  # warm up
        for clients in clients_list:
            report = load_test(url, payloads, clients=clients, requests=requests)
            print(f"server: {report.line(clients)}", flush=True)
            if report.errors == 0 and report.p99_ms <= 100 and (best is None or report.qps > best[1].qps):
                best = (clients, report)
    if best is None:
        print("server: no load level kept p99 within 100 ms")
        return None
    print(f"server: {best[1].qps:.1f} queries/s at p99 {best[1].p99_ms:.1f} ms <= 100 ms ({best[0]} clients, embedding queries)")
    return {"server_clients": best[0], "server_qps": best[1].qps, "server_p99_ms": best[1].p99_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the collection")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=500, help="held-out queries for recall and latency")
    ap.add_argument("--types", default="flat,ivf_flat,ivf_pq", help="index types to compare: flat, hnsw, ivf_flat, ivf_pq")
    ap.add_argument("--budget", default="4GB", help="memory budget for the default choice")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--clients", default="1,2,4,8,16", help="server sweep: concurrent clients")
    ap.add_argument("--requests", type=int, default=300, help="server sweep: requests per load level")
    ap.add_argument("--seed", type=int, default=0)
    add_json_option(ap)
    args = ap.parse_args()
    import faiss

    from cliplab.features import Features
    from cliplab.search.index import SearchIndex
    from cliplab.search.sizing import parse_bytes, plan_index
    from cliplab.search.tuning import exact_neighbours, recall_at_k

    machine = print_machine()

    n, d = args.n, args.dim
    print(f"{n} x {d} clustered vectors ({args.clusters} clusters), {args.queries} held-out queries, "
          f"{faiss.omp_get_max_threads()} FAISS threads, {os.cpu_count()} cores", flush=True)
    t = time.perf_counter()
    X = clustered(n + args.queries, d, args.clusters, args.seed)
    X, queries = X[:n], X[n:]
    feats = Features(X=X, ids=[f"v{i}" for i in range(n)], model="benchmark", identity="benchmark")
    exact = exact_neighbours(X, queries, 10)
    print(f"data and exact top-10 in {time.perf_counter() - t:.1f} s", flush=True)

    budget = parse_bytes(args.budget)
    default_key = plan_index(n, d, budget).key
    rows: dict[str, tuple] = {}
    default_index = None
    with tempfile.TemporaryDirectory(prefix="cliplab-bench-") as tmp:
        kinds = [k.strip() for k in args.types.split(",") if k.strip()]
        keys = {kind: index_key(kind, n, d, budget) for kind in kinds}
        if default_key not in keys.values():
            keys["default"] = default_key
        for kind, key in keys.items():
            t = time.perf_counter()
            index = SearchIndex.build(feats, key=key, target_recall=args.target_recall, seed=args.seed)
            build_s = time.perf_counter() - t
            size = folder_bytes(index.save(Path(tmp) / kind))
            found = index.index.search(queries, 10)[1]
            recall = recall_at_k(found, exact)
            p50, p99 = single_query_latency(index, queries)
            effort = index.info.get("effort") or {}
            rows[kind] = (key, build_s, size, recall, p50, p99)
            print(f"{kind:9s} {key:38s} build {build_s:7.1f} s, index {size / 1e6:8.1f} MB on disk (~ its memory), "
                  f"{effort.get('name', 'exact')}={effort.get('value', '-')}, recall@10 {recall:.4f}, "
                  f"p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
            if key == default_key:
                default_index = index
            else:
                index.close()
        if "flat" in rows:
            base = rows["flat"][4]
            for kind, (key, _, _, _, p50, _) in rows.items():
                print(f"latency ratio vs exact search (flat): {kind} {base / p50:.1f}x faster at p50")
        server = server_sweep(default_index, queries, [int(c) for c in args.clients.split(",")], args.requests)
        key, _, _, recall, p50, p99 = next(r for r in rows.values() if r[0] == default_key)
        print(f"default index ({key}, budget {args.budget}): target recall@10 >= {args.target_recall}, p50 <= 5 ms: "
              f"{'met' if recall >= args.target_recall and p50 <= 5 else 'NOT met'}")
        print(f"default index: recall@10 {recall:.4f}, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {n} vectors")
    if args.json:
        columns = ("key", "build_s", "index_bytes", "recall_at_10", "p50_ms", "p99_ms")
        figures = {"vectors": n, "dim": d, "default_key": key, "default_recall_at_10": recall, "default_p50_ms": p50, "default_p99_ms": p99,
                   **(server or {}), "index_types": {kind: dict(zip(columns, row)) for kind, row in rows.items()}}  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
