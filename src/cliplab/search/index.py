"""``SearchIndex``: a FAISS index over a feature store, its metadata sidecar, and the model it needs.

    index = SearchIndex.build(["feats/"], memory_budget="4GB", target_recall=0.95)
    index.add(more_features)                              # incremental: same model, new ids
    index.save("my.index");  index = SearchIndex.load("my.index", mmap=True)
    index.search(query_vectors, k=10, where="label = 'cat'")   # [[{"id", "score", ...}, ...], ...]

An index folder holds one version of the index: ``index-<build>.faiss`` (inner-product FAISS index;
row r is the r-th vector added), ``metadata-<build>.sqlite`` (see ``metadata.py``) and ``index.json``
(format, build id, the two part names, model name and identity, factory key, tuned search effort,
measured recall). A save writes the parts of a new version under new names, then replaces
``index.json`` (one atomic rename: the moment the new version exists), then removes the old parts, so
a save killed at any point, or failing on a full disk, leaves the old version or the new one, never
a mix. Loading checks that the parts are there and agree (as many metadata rows as vectors).

Building from many shards never holds them all: a first pass reads each shard for its size and a
sample to train the quantiser on, a second pass adds shard by shard while keeping the exact top-k
of the held-out tuning queries up to date, so the effort can be tuned at the end.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from cliplab.errors import InputError, OutputError, how_to_pass, warn
from cliplab.features import Features
from cliplab.files import atomic_target, atomic_write
from cliplab.search.metadata import MetadataStore
from cliplab.search.sizing import EXACT_BELOW, IndexPlan, parse_bytes, plan_index
from cliplab.search.tuning import effort_knob, set_effort, tune_effort
from cliplab.validation import check_embeddings

INFO_FILE = "index.json"
FORMAT, VERSION = "cliplab.search-index", 2
# the only names a save deletes: parts of a version (version 1 had no build id in them) and the
# temporary files cliplab.files (mkstemp: ".NAME." + 8 of [a-z0-9_] + ".tmp") and SQLite make beside them
_PART = re.compile(r"^(index(-[0-9a-f]{12})?\.faiss|metadata(-[0-9a-f]{12})?\.sqlite)$")
_TEMP = re.compile(r"^\.(index\.json|index(-[0-9a-f]{12})?\.faiss|metadata(-[0-9a-f]{12})?\.sqlite)\.[a-z0-9_]{8}\.tmp(-journal)?$")
# a stored vector this close to a composed query's image is that image (or a copy of it), not an edit of it
COPY_COSINE = 0.99
COPIES_CHECKED = 10
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
        if plan.estimated_bytes > budget:
            warn(f"{how_to_pass('memory_budget', str(memory_budget))} cannot hold the {n} vectors: as {plan.key} (every index "
                 f"under {EXACT_BELOW} vectors is exact) they need about {_size(plan.estimated_bytes)}; raise the budget")
        index = _factory(dim, plan.key)
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
            _train(index, train, plan.key)
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

    def load_model(self, spec: str | None = None, pretrained: str | None = None, device: str | None = None,
                   precision: str = "fp32"):
        """The model the index was built with (its recorded spec, or ``spec``), checked by identity and
        dimension; any ``precision`` (``load_model``'s) will do, see ``model_difference``."""
        from cliplab.models import load_model

        name = spec or self.model_name
        if not name:
            raise InputError("the index records no model; pass --model (and --pretrained) that embedded its features")
        model = load_model(name, pretrained=pretrained, device=device, precision=precision)
        differs = model_difference(model.identity, self.info.get("identity") or "")
        if model.embed_dim != self.dim:
            differs = ", ".join(filter(None, [f"embedding dim {model.embed_dim} vs {self.dim}", differs]))
        if differs:
            raise InputError(
                f"{name} is not the model this index was built with ({self.model_name}): {differs} differ; "
                f"pass the same {how_to_pass('spec')} and {how_to_pass('pretrained')} as when embedding"
            )
        return model

    # --- searching ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10, where: str | None = None,
               exclude: np.ndarray | None = None) -> list[list[dict[str, Any]]]:
        """Top-``k`` hits per query row, best first: ``{"id", "score", ...metadata}``.

        ``where`` is an SQL expression over the metadata columns (``label = 'cat' AND width > 100``).
        ``exclude``: one vector per query (a composed query's image); the rows that are copies of it
        (cosine >= ``COPY_COSINE``) are left out, since the query asks for that image changed.
        """
        Q = self._check_vectors(queries, "query")
        if k < 1:
            raise InputError(f"k={k}; ask for at least one result")
        copies = [set() for _ in Q] if exclude is None else self._copies(self._check_vectors(exclude, "excluded vector"), where)
        if len(copies) != len(Q):
            raise InputError(f"{len(Q)} queries but {len(copies)} vectors to exclude; pass one per query")
        scores, rows = self._search_rows(Q, k + max(map(len, copies)), where)
        records = self.metadata.records(sorted({int(r) for r in rows.ravel() if r >= 0}))
        return [
            [{"id": records[int(r)]["id"], "score": float(s), **{c: v for c, v in records[int(r)].items() if c != "id"}}
             for s, r in zip(srow, rrow) if r >= 0 and int(r) not in skip][:k]
            for srow, rrow, skip in zip(scores, rows, copies)
        ]

    def _check_vectors(self, vectors: np.ndarray, name: str) -> np.ndarray:
        X = check_embeddings(np.atleast_2d(vectors), name=name)
        if X.shape[1] != self.dim:
            raise InputError(f"the {name} has {X.shape[1]} dims but the index holds {self.dim}-dim vectors; "
                             "embed it with the model the index was built with")
        return X

    def _search_rows(self, Q: np.ndarray, k: int, where: str | None) -> tuple[np.ndarray, np.ndarray]:
        if where:
            return self._search_filtered(Q, k, self.metadata.filter_rows(where))
        return self.index.search(Q, min(k, max(len(self), 1)))

    def _copies(self, vectors: np.ndarray, where: str | None) -> list[set[int]]:
        """Per vector, the rows (among its ``COPIES_CHECKED`` nearest) that are copies of it."""
        scores, rows = self._search_rows(vectors, COPIES_CHECKED, where)
        return [{int(r) for s, r in zip(srow, rrow) if r >= 0 and s >= COPY_COSINE} for srow, rrow in zip(scores, rows)]

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
        """Write the index to ``folder`` as a new version (see the module docstring); the old one is
        removed once ``index.json`` names the new one. A folder cliplab did not write is refused."""
        folder = Path(folder)
        _remove_leftovers(folder, keep=_parts(_own_folder(folder)))
        build = uuid.uuid4().hex[:12]
        files = {"vectors": f"index-{build}.faiss", "metadata": f"metadata-{build}.sqlite"}
        with _writing(folder / files["vectors"]) as tmp:
            faiss.write_index(self.index, str(tmp))
        with _writing(folder / files["metadata"]) as tmp:
            self.metadata.backup_to(tmp)
        info = {**self.info, "version": VERSION, "build": build, "files": files, "count": len(self)}
        info.pop("mmap", None)
        atomic_write(folder / INFO_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        _remove_leftovers(folder, keep=set(files.values()))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, mmap: bool = False, read_only: bool | None = None) -> SearchIndex:
        """Open an index folder; ``mmap`` maps the vectors from disk instead of reading them (read-only).

        Not ``read_only``: the metadata is read into memory, so adding rows leaves the folder as it
        is until ``save`` writes a new version.
        """
        folder = Path(folder)
        info = _read_info(folder)
        vectors, rows_file = (folder / info["files"][part] for part in ("vectors", "metadata"))
        for part in (vectors, rows_file):
            if not part.is_file():
                raise InputError(f"{folder} is incomplete ({part.name} is missing); build the index again with cliplab index build")
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(vectors), flags)
        except RuntimeError as exc:
            raise InputError(f"cannot read {vectors}: {_faiss_reason(exc)}; build the index again with cliplab index build") from exc
        if index.ntotal != info.get("count", index.ntotal):
            raise InputError(f"{vectors} holds {index.ntotal} vectors but {INFO_FILE} says {info['count']}; build the index again")
        effort = (info.get("effort") or {}).get("value")
        if effort:
            set_effort(index, effort)
        metadata = _open_metadata(rows_file, index.ntotal, read_only=mmap if read_only is None else read_only)
        if mmap:
            info["mmap"] = True
        return cls(index, metadata, info, folder=folder)

    def close(self) -> None:
        self.metadata.close()


# --- helpers ----------------------------------------------------------------------------------------
def _read_info(folder: Path) -> dict[str, Any]:
    """``index.json`` of an index folder written by this cliplab, or one ``InputError``."""
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        raise InputError(f"{folder} is not a search index (no {INFO_FILE}); build one with cliplab index build")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{info_path} is damaged ({exc}); build the index again") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise InputError(f"{info_path} is not a cliplab search index")
    if info.get("version") != VERSION:
        raise InputError(f"{folder} was written by another cliplab version (format {info.get('version')}); build the index again with cliplab index build")
    files = info.get("files")
    if not isinstance(files, dict) or sorted(files) != ["metadata", "vectors"] or not all(_PART.match(str(n)) for n in files.values()):
        raise InputError(f"{info_path} is damaged (its files entry is not two part names); build the index again")
    return info


def _open_metadata(path: Path, count: int, *, read_only: bool) -> MetadataStore:
    """The metadata file checked against the vectors: readable, one row per vector; in memory unless ``read_only``."""
    try:
        store = MetadataStore(path, read_only=True)
        rows = len(store)
        if not read_only:
            store, on_disk = store.copy(), store
            on_disk.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path} is damaged ({exc}); build the index again with cliplab index build") from exc
    if rows != count:
        store.close()
        raise InputError(f"{path} holds {rows} rows for {count} vectors; build the index again with cliplab index build")
    return store


def _own_folder(folder: Path) -> dict[str, Any] | None:
    """``folder``, made ready to take a new version: its ``index.json`` (None for a new or half-written
    folder). A file, a foreign ``index.json``, or a folder without one that holds other names than a
    save's is refused; beside a cliplab ``index.json`` other files are left alone."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; pass a folder for the index")
    folder.mkdir(parents=True, exist_ok=True)
    info_path = folder / INFO_FILE
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError:
            info = None
        if isinstance(info, dict) and info.get("format") == FORMAT:
            return info
        raise InputError(f"{folder} exists and is not a cliplab search index (its {INFO_FILE} is another file); pass a new folder")
    others = [p.name for p in folder.iterdir() if not (_PART.match(p.name) or _TEMP.match(p.name))]
    if others:
        raise InputError(f"{folder} exists and is not a cliplab search index (it holds {others[0]}); pass a new folder")
    return None


def _parts(info: dict[str, Any] | None) -> set[str]:
    files = (info or {}).get("files")
    return set(files.values()) if isinstance(files, dict) else set()


def _remove_leftovers(folder: Path, keep: set[str]) -> None:
    """Delete what earlier saves left in ``folder``: parts not in ``keep`` and temporary files."""
    for path in folder.iterdir():
        if (_PART.match(path.name) and path.name not in keep) or _TEMP.match(path.name):
            path.unlink(missing_ok=True)


@contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """``atomic_target(path)``, with FAISS's and SQLite's write errors (a full disk) as one ``OutputError``."""
    try:
        with atomic_target(path) as tmp:
            yield tmp
    except (RuntimeError, sqlite3.Error) as exc:
        reason = _faiss_reason(exc) if isinstance(exc, RuntimeError) else str(exc)
        raise OutputError(f"cannot write {path} ({reason}); free some disk space and run again") from exc


def model_difference(identity: str, other: str) -> str:
    """What differs between two models' identities ("model name, weights"; "" for the same model or
    an unknown identity), whatever precision each ran at.

    A ``Model.identity`` is ``name|sha256=...|arch=...|pre=...`` plus ``|bf16``, ``|fp16`` or ``|int8``
    when not fp32. Precision is arithmetic, not another model: features of the same weights at bf16
    or int8 match fp32 ones to cosine 0.9999 / 0.9998 (``cliplab.models.precision``), one embedding space.
    """
    if not identity or not other:
        return ""
    mine, theirs = _identity_parts(identity), _identity_parts(other)
    keys = dict.fromkeys([*mine, *theirs])
    return ", ".join(_IDENTITY_WORDS.get(k, k) for k in keys if mine.get(k) != theirs.get(k))


_IDENTITY_WORDS = {"name": "model name", "sha256": "weights", "arch": "architecture", "pre": "preprocessing",
                   "layers": "multi-level layers", "tokens": "multi-level tokens"}  # fmt: skip


def _identity_parts(identity: str) -> dict[str, str]:
    from cliplab.models.options import PRECISIONS

    name, *rest = identity.split("|")
    parts = {"name": name}
    for part in rest:
        key, _, value = part.partition("=")
        if part not in PRECISIONS:
            parts[key] = value
    return parts


def _same_model(shard: Features, model: str | None, identity: str | None, dim: int | None) -> tuple[str, str, int]:
    if dim is not None and shard.dim != dim:
        raise InputError(f"a feature shard has {shard.dim} dims but the index has {dim}; embed every shard with the same model")
    differs = model_difference(shard.identity, identity or "")
    if differs:
        raise InputError(f"a feature shard was embedded with {shard.model!r}, not {model!r} like the index ({differs} differ); "
                         "re-embed it with that model")
    return (model if model is not None else shard.model), (identity if identity is not None else shard.identity), shard.dim


def _faiss_reason(exc: RuntimeError) -> str:
    """FAISS's own words from its error ("Error in <function> at <file>:<line>: Error: '<check>' failed: <reason>")."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: '.*' failed: )?", "", first)


def _factory(dim: int, key: str) -> faiss.Index:
    try:
        return faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(
            f"{how_to_pass('key', key)}: FAISS cannot build that index for {dim}-dim vectors ({_faiss_reason(exc)}); "
            "pass a FAISS factory string such as Flat, HNSW32,Flat or IVF256,Flat, or leave it out"
        ) from exc


def _train(index: faiss.Index, train: np.ndarray, key: str) -> None:
    try:
        index.train(train)
    except RuntimeError as exc:
        raise InputError(
            f"{how_to_pass('key', key)}: cannot train it on the {len(train)} training vectors these features give "
            f"({_faiss_reason(exc)}); pass an index with fewer lists or centroids, or leave it out"
        ) from exc


def _size(n_bytes: int) -> str:
    return next(f"{n_bytes / scale:.3g} {unit}" for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1, "bytes")) if n_bytes >= scale or unit == "bytes")


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

