"""``SearchIndex``: a FAISS index over a feature store, its metadata sidecar, and the model it needs.

    index = SearchIndex.build(["feats/"], memory_budget="4GB", target_recall=0.95)
    index.add(more_features)                              # incremental: same model, new ids
    index.save("my.index");  index = SearchIndex.load("my.index", mmap=True)
    index.search(query_vectors, k=10, where="label = 'cat'")   # [[{"id", "score", ...}, ...], ...]

An index folder holds ``index.faiss`` (inner-product FAISS index; row r is the r-th vector added),
``metadata.sqlite`` (see ``metadata.py``) and ``index.json`` (format, model name and identity,
factory key, tuned search effort, measured recall), written last.

Building from many shards never holds them all: a first pass reads each shard for its size and a
sample to train the quantiser on, a second pass adds shard by shard while keeping the exact top-k
of the held-out tuning queries up to date, so the effort can be tuned at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from cliplab.errors import InputError
from cliplab.features import Features
from cliplab.files import atomic_target, atomic_write
from cliplab.search.metadata import MetadataStore
from cliplab.search.sizing import IndexPlan, parse_bytes, plan_index
from cliplab.search.tuning import effort_knob, set_effort, tune_effort
from cliplab.validation import check_embeddings

INDEX_FILE, METADATA_FILE, INFO_FILE = "index.faiss", "metadata.sqlite", "index.json"
FORMAT = "cliplab.search-index"
TUNE_QUERIES = 500
TUNE_K = 10
TRAIN_PER_LIST = 39  # FAISS k-means wants >= 39 points per centroid
MAX_TRAIN = 200_000
EXACT_FILTER_BELOW = 50_000  # filtered searches over fewer rows than this are exact


FeatureSource = Features | str | os.PathLike


def _iter_shards(shards: Sequence[FeatureSource]) -> Iterator[Features]:
    for shard in shards:
        yield shard if isinstance(shard, Features) else Features.load(shard)


class SearchIndex:
    """A searchable collection: FAISS vectors + SQLite metadata + the model's name and identity."""

    def __init__(self, index: faiss.Index, metadata: MetadataStore, info: dict[str, Any], folder: Path | None = None):
        self.index = index
        self.metadata = metadata
        self.info = info
        self.folder = folder

    # --- properties --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def model_name(self) -> str:
        return self.info.get("model", "")

    def __repr__(self) -> str:
        return f"SearchIndex({len(self)} x {self.dim}, {self.info.get('key')!r}, model={self.model_name!r})"

    # --- building ----------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        features: FeatureSource | Sequence[FeatureSource],
        *,
        memory_budget: str | int = "4GB",
        target_recall: float = 0.95,
        mmap: bool = False,
        key: str | None = None,
        seed: int = 0,
        images: str | None = None,
        tune_queries: int = TUNE_QUERIES,
    ) -> SearchIndex:
        """Plan, train, fill and tune an index over one or many feature shards.

        memory_budget: bytes or a size such as "4GB"; with ``target_recall`` and ``mmap`` it picks the
            index (``sizing.plan_index``) unless ``key`` names a FAISS factory string.
        images: the source spec the features were embedded from, kept so the service can show images.
        """
        if not 0 < target_recall <= 1:
            raise InputError(f"target recall {target_recall} must be in (0, 1]")
        shards = [features] if isinstance(features, (Features, str, os.PathLike)) else list(features)
        if not shards:
            raise InputError("no feature shards given; pass at least one features folder")
        budget = parse_bytes(memory_budget)
        rng = np.random.default_rng(seed)

        # pass 1: sizes, model, a training sample and held-out tuning queries
        sizes, model, identity, dim = [], None, None, None
        for shard in _iter_shards(shards):
            model, identity, dim = _same_model(shard, model, identity, dim)
            sizes.append(len(shard))
        n = sum(sizes)
        if n == 0:
            raise InputError("the feature shards hold no vectors; embed some images first")
        plan = IndexPlan(key, "custom", 0) if key else plan_index(n, dim, budget, mmap=mmap)
        index = faiss.index_factory(dim, plan.key, faiss.METRIC_INNER_PRODUCT)
        n_train = 0 if index.is_trained else min(n, MAX_TRAIN, max(TRAIN_PER_LIST * _lists(index) * 4, 10_000))
        n_query = min(tune_queries, max(1, n // 10)) if effort_knob(index) else 0
        picked = rng.permutation(n)[: n_train + n_query]
        order = np.argsort(picked, kind="stable")
        sample = np.empty((len(picked), dim), np.float32)
        if len(picked):
            sample[order] = _gather(shards, sizes, picked[order])
        queries, train = sample[:n_query], sample[n_query:]  # tuning queries are held out of training
        if n_train:
            _shorten_opq_training(index)
            index.train(train)
        _make_direct_map(index)
        del train, sample

        info = {
            "format": FORMAT, "version": 1, "model": model, "identity": identity, "dim": dim,
            "key": plan.key, "kind": plan.kind, "memory_budget": budget, "target_recall": target_recall,
            "images": images, "effort": None, "recall_at_10": None,
            "images_base": os.getcwd() if images else None,  # a relative --images is relative to this
        }
        built = cls(index, MetadataStore(":memory:"), info)

        # pass 2: add shard by shard, keeping the exact top-k of the tuning queries
        # leave-one-out: each tuning query is a row of the collection, so its own row is dropped from
        # both the exact and the approximate neighbours, as if it had been held out of the index
        k = min(TUNE_K + 1, n)
        best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        best_rows = np.full((len(queries), k), -1, dtype=np.int64)
        for shard in _iter_shards(shards):
            first = len(built)
            built.add(shard)
            if len(queries):
                flat = faiss.IndexFlatIP(dim)
                flat.add(shard.X)
                s, r = flat.search(queries, min(k, len(shard)))
                best_scores, best_rows = _merge_topk(best_scores, best_rows, s, r + first, k)
        if len(queries):
            own = picked[:n_query]
            exact = _drop_own(best_rows, own, k - 1)
            search = lambda q, kk: _drop_own(index.search(q, kk + 1)[1], own, kk)
            effort, recall = tune_effort(index, queries, exact, target_recall, search)
            knob = effort_knob(index)
            info["effort"] = {"name": knob[0], "value": effort} if knob and effort is not None else None
            info["recall_at_10"] = round(recall, 4)
        return built

    def add(self, features: FeatureSource) -> int:
        """Add a feature shard (same model, ids not yet indexed); returns how many rows were added."""
        shard = features if isinstance(features, Features) else Features.load(features)
        if self.info.get("mmap"):
            raise InputError("this index was loaded memory-mapped (read-only); load it without mmap to add to it")
        _same_model(shard, self.info.get("model"), self.info.get("identity"), self.dim)
        if not len(shard):
            return 0
        if len(set(shard.ids)) != len(shard.ids):
            raise InputError("the features repeat an id; every indexed vector needs its own id")
        known = self.metadata.has_ids(shard.ids)
        if known:
            raise InputError(f"{len(known)} ids are already in the index (e.g. {known[0]!r}); add only new images")
        X = check_embeddings(shard.X, self.dim, name="features")
        first = len(self)
        self.index.add(X)
        self.metadata.add(first, shard.ids, shard.labels, shard.captions, shard.meta)
        return len(shard)

    def load_model(self, spec: str | None = None, pretrained: str | None = None, device: str | None = None):
        """The model the index was built with (its recorded spec, or ``spec``), checked by identity."""
        from cliplab.models import load_model

        name = spec or self.model_name
        if not name:
            raise InputError("the index records no model; pass --model (and --pretrained) that embedded its features")
        model = load_model(name, pretrained=pretrained, device=device)
        recorded = self.info.get("identity")
        if recorded and model.identity != recorded:
            raise InputError(
                f"{name} is not the model this index was built with ({self.model_name}); "
                "pass the same --model and --pretrained as when embedding"
            )
        return model

    # --- searching ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10, where: str | None = None) -> list[list[dict[str, Any]]]:
        """Top-``k`` hits per query row, best first: ``{"id", "score", ...metadata}``.

        ``where`` is an SQL expression over the metadata columns (``label = 'cat' AND width > 100``).
        """
        Q = check_embeddings(np.atleast_2d(queries), self.dim, name="query")
        if k < 1:
            raise InputError(f"k={k}; ask for at least one result")
        if where:
            scores, rows = self._search_filtered(Q, k, self.metadata.filter_rows(where))
        else:
            scores, rows = self.index.search(Q, min(k, max(len(self), 1)))
        records = self.metadata.records(sorted({int(r) for r in rows.ravel() if r >= 0}))
        return [
            [{"id": records[int(r)]["id"], "score": float(s), **{c: v for c, v in records[int(r)].items() if c != "id"}}
             for s, r in zip(srow, rrow) if r >= 0]
            for srow, rrow in zip(scores, rows)
        ]

    def _search_filtered(self, Q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(allowed):
            return np.zeros((len(Q), 0), np.float32), np.zeros((len(Q), 0), np.int64)
        k = min(k, len(allowed))
        if len(allowed) <= EXACT_FILTER_BELOW:
            vectors = self._reconstruct(allowed)
            if vectors is not None:  # few rows pass: score them all (exact, and faster than probing)
                scores = Q @ vectors.T
                top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
                return np.take_along_axis(scores, top, axis=1), allowed[top]
        return self.index.search(Q, k, params=self._filter_params(allowed))

    def _reconstruct(self, rows: np.ndarray) -> np.ndarray | None:
        try:
            return self.index.reconstruct_batch(rows)
        except RuntimeError:  # an index type without reconstruction (or without a direct map)
            return None

    def _filter_params(self, allowed: np.ndarray) -> faiss.SearchParameters:
        selector = faiss.IDSelectorBatch(allowed)
        knob = effort_knob(self.index)
        effort = (self.info.get("effort") or {}).get("value")
        # fewer rows pass the filter -> fewer hits per probed list: probe proportionally more
        scale = max(1, int(np.ceil(len(self) / len(allowed))))
        if knob is None:
            params = faiss.SearchParameters(sel=selector)
        elif knob[0] == "nprobe":
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(knob[1], (effort or 1) * scale))
        else:
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=min(knob[1], (effort or 64) * scale))
        if isinstance(faiss.downcast_index(self.index), faiss.IndexPreTransform):
            params = faiss.SearchParametersPreTransform(index_params=params)
        params.sel_ref = selector  # keep the selector alive as long as the parameters
        return params

    # --- files -------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index folder (index, metadata, then ``index.json`` last)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_target(folder / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        same = self.folder is not None and self.folder.resolve() == folder.resolve()
        if not same:  # rows already live in this folder's metadata file when it is the one loaded
            with atomic_target(folder / METADATA_FILE) as tmp:
                self.metadata.backup_to(tmp)
        info = {**self.info, "count": len(self)}
        info.pop("mmap", None)
        atomic_write(folder / INFO_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, mmap: bool = False, read_only: bool | None = None) -> SearchIndex:
        """Open an index folder; ``mmap`` maps the vectors from disk instead of reading them (read-only)."""
        folder = Path(folder)
        info_path = folder / INFO_FILE
        if not info_path.is_file():
            raise InputError(f"{folder} is not a search index (no {INFO_FILE}); build one with cliplab index build")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{info_path} is damaged ({exc}); build the index again") from exc
        if info.get("format") != FORMAT:
            raise InputError(f"{info_path} is not a cliplab search index")
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(folder / INDEX_FILE), flags)
        except RuntimeError as exc:
            raise InputError(f"cannot read {folder / INDEX_FILE}: {str(exc).splitlines()[0]}") from exc
        if index.ntotal != info.get("count", index.ntotal):
            raise InputError(f"{folder / INDEX_FILE} holds {index.ntotal} vectors but {INFO_FILE} says {info['count']}; build the index again")
        effort = (info.get("effort") or {}).get("value")
        if effort:
            set_effort(index, effort)
        read_only = mmap if read_only is None else read_only
        metadata = MetadataStore(folder / METADATA_FILE, read_only=read_only)
        if mmap:
            info["mmap"] = True
        return cls(index, metadata, info, folder=folder)

    def close(self) -> None:
        self.metadata.close()


# --- helpers ----------------------------------------------------------------------------------------
def _same_model(shard: Features, model: str | None, identity: str | None, dim: int | None) -> tuple[str, str, int]:
    if dim is not None and shard.dim != dim:
        raise InputError(f"a feature shard has {shard.dim} dims but the index has {dim}; embed every shard with the same model")
    if identity is not None and shard.identity and identity and shard.identity != identity:
        raise InputError(f"a feature shard was embedded with {shard.model!r}, not {model!r} like the index; re-embed it with that model")
    return (model if model is not None else shard.model), (identity if identity is not None else shard.identity), shard.dim


def _shorten_opq_training(index: faiss.Index) -> None:
    """OPQ's rotation: 10 alternations instead of FAISS's 50 (5x faster to train on 2 cores, and the
    rotation's objective changes little after the first few; Ge et al., "Optimized Product
    Quantization", 2013, Sec. 3.2 alternate between the codebooks and the rotation)."""
    pretransform = faiss.downcast_index(index)
    if isinstance(pretransform, faiss.IndexPreTransform):
        for i in range(pretransform.chain.size()):
            transform = faiss.downcast_VectorTransform(pretransform.chain.at(i))
            if isinstance(transform, faiss.OPQMatrix):
                transform.niter = 10


def _make_direct_map(index: faiss.Index) -> None:
    """IVF indexes keep a row -> list map, so filtered searches can read rows back (8 bytes a row)."""
    try:
        faiss.extract_index_ivf(index).make_direct_map()
    except RuntimeError:
        pass  # not an IVF index: rows are read back directly


def _lists(index: faiss.Index) -> int:
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return 256  # PQ codebooks: 256 centroids per sub-quantiser


def _gather(shards: Sequence[FeatureSource], sizes: list[int], rows: np.ndarray) -> np.ndarray:
    """The vectors at global ``rows`` (sorted), reading the shards in order."""
    out, start = [], 0
    for shard, size in zip(shards, sizes):
        local = rows[(rows >= start) & (rows < start + size)] - start
        if len(local):
            feats = shard if isinstance(shard, Features) else Features.load(shard)
            out.append(feats.X[local])
        start += size
    dim = out[0].shape[1] if out else 0
    return np.ascontiguousarray(np.concatenate(out)) if out else np.zeros((0, dim), np.float32)


def _drop_own(rows: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each row of neighbours without its query's own row, cut to ``k`` (padded with -1)."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (found, me) in enumerate(zip(rows, own)):
        kept = found[found != me][:k]
        out[i, : len(kept)] = kept
    return out


def _merge_topk(s1: np.ndarray, r1: np.ndarray, s2: np.ndarray, r2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores, rows = np.concatenate([s1, s2], axis=1), np.concatenate([r1, r2], axis=1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), np.take_along_axis(rows, top, axis=1)

