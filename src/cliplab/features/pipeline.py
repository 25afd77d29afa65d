"""``embed``: images -> ``Features``, decoding in worker processes while the model runs here.

Four stages, each a method of ``_EmbedRun``:

1. hash: read every item's bytes and sha256 them (a thread pool: file reads and hashlib release the
   GIL). Unreadable items are skipped here.
2. look up: embeddings already stored for these bytes under this model's namespace (identity,
   precision, decode path) are read from the chunk files of the cache (by default the platform cache
   folder, see ``cache_folder.py``; the chunks are in ``cache.py``).
3. compute: the misses (one per distinct content) go through a torch ``DataLoader`` whose workers
   read, re-hash, decode (``decode_image``) and preprocess them, or, with decode "gpu", through
   ``device_decode.device_batches`` (torchvision decoding on the model's device); the main process
   gathers full batches and calls ``model.encode_pixels_async``, keeping one batch in flight. Every
   ``chunk_size`` new embeddings are written as one chunk, so a killed run loses at most one chunk of
   work and the next run resumes. ``_Encoder`` owns the buffers of this stage.
4. assemble: the rows in source order, the skipped items and the run's figures, as ``Features``.

The workers re-hash the bytes they decode, so an embedding is always stored under the hash of the
exact bytes it was computed from.

Where the time goes (2-core AMD EPYC, ViT-B-32 fp32 at 224 px, batch 64; benchmarks/embed_throughput.py):
the encoder takes ~64 ms/img at the machine's matmul peak, so for 400x300 JPEGs (decode+preprocess
~3.4 ms/img) overlapping decoding gains nothing measurable on an idle machine. What pays:
- large JPEGs are decoded at a reduced scale (libjpeg DCT scaling, keeping >= 2x the model input):
  12 MP photos 194 -> 48 ms/img; with the overlap, 2.45x the plain loop (embeddings: cosine >= 0.99999);
- preprocessing in worker processes runs with one torch thread (torch's ``DataLoader`` sets that in
  each worker): on a busy machine torch's multi-threaded small ops wait at thread barriers
  (3.5 -> 50 ms/img with 2 threads when other processes hold the cores). Decoding in this process
  (``num_workers=0``, or 16 images or fewer) leaves the caller's thread count alone.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from cliplab.data.images import DEFAULT_MAX_PIXELS
from cliplab.data.items import ImageItem, Skipped
from cliplab.data.sources.base import read_file
from cliplab.data.tensor_decode import TensorPreprocess
from cliplab.errors import InputError, NothingEmbeddedError, warn
from cliplab.features.cache import CacheWarning, ChunkCache, content_hash, namespace_key
from cliplab.features.decoding import Batch, DecodeDataset, DecodeTask, collate, read_error
from cliplab.features.features import Features

DEFAULT_CHUNK_SIZE = 1024
SMALL_JOB = 16  # images; fewer are decoded in this process when num_workers is None
DRAFT_TAG = "jpeg-draft>=2x"
DEVICE_DECODE_TAG = "torchvision-decode_jpeg"
DECODES = ("auto", "cpu", "gpu")


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass: 256 on CUDA (a GPU needs large batches to be busy), 64 elsewhere."""
    return 256 if torch.device(device).type == "cuda" else 64


def pick_decode(decode: str, model: Any):
    """(path, tensor preprocessing | None): "gpu" decodes JPEGs with torchvision on the model's
    device (on a CPU model: torchvision's CPU decoder, the same code), "cpu" with PIL in workers;
    "auto" is "gpu" on CUDA when the model's preprocessing can run as tensor ops, else "cpu"."""
    if decode not in DECODES:
        raise InputError(f"unknown decode {decode!r}; use one of {', '.join(DECODES)}")
    device = torch.device(getattr(model, "device", "cpu"))
    if decode == "cpu" or (decode == "auto" and device.type != "cuda"):
        return "cpu", None
    mirrored = TensorPreprocess.mirror(getattr(model, "preprocess", None))
    if mirrored is None:
        if decode == "gpu":
            name = getattr(model, "name", type(model).__name__)
            raise InputError(f"decode='gpu': {name}'s preprocessing is not Resize, CenterCrop, Normalize, so it cannot run on the device; use decode='cpu'")
        return "cpu", None
    return "gpu", mirrored


# --- sources --------------------------------------------------------------------------------------
def as_source(source: Any):
    """An ``ImageSource`` for ``source``: one as is, a list of image paths, or a spec for ``open_source``."""
    from cliplab.data.sources import ImageSource, open_source

    if isinstance(source, ImageSource) or (hasattr(source, "items") and hasattr(source, "skipped")):
        return source
    if isinstance(source, (list, tuple)):
        if all(isinstance(s, ImageItem) for s in source):
            return ImageSource(name="items", items=list(source))
        if all(isinstance(s, (str, os.PathLike)) for s in source) and not _all_tar(source):
            items = [ImageItem(id=os.fspath(p), read_bytes=partial(read_file, os.fspath(p))) for p in source]
            return ImageSource(name="files", items=items)
    return open_source(source)


def _all_tar(paths: Sequence[Any]) -> bool:
    return bool(paths) and all(os.fspath(p).lower().endswith(".tar") for p in paths)


def draft_side(model: Any) -> int | None:
    """The side length the model's preprocessing resizes to, when it can be found (else None)."""
    cfg = getattr(model, "preprocess_cfg", None)
    size = cfg.get("size") if isinstance(cfg, dict) else None
    if size is None:
        for t in getattr(getattr(model, "preprocess", None), "transforms", []) or []:
            if type(t).__name__ == "Resize":
                size = getattr(t, "size", None)
                break
    if isinstance(size, (list, tuple)):
        size = max(size) if size else None
    return int(size) if isinstance(size, (int, np.integer)) and size > 0 else None


# --- how many workers --------------------------------------------------------------------------------
def default_num_workers(device: torch.device | None = None) -> int:
    """Decode workers: on an accelerator every core but one; for a CPU model 2 up to 5
    cores, one more per 4 cores beyond. The encoder keeps all its torch threads.

    Measured on 2 cores, ViT-B-32 fp32, batch 16, idle machine: 12 MP JPEGs (decode ~49 ms/img
    at reduced scale, encode ~55 ms/img) 2 workers 9.2 img/s, 1 worker 7.6-8.0, in-process 8.2-8.4;
    giving the workers a core of their own (1 encoder thread) 6.3-7.1. 400x300 JPEGs (decode
    ~4 ms/img) 1 or 2 workers: within noise of each other.
    """
    cores = _cores()
    if device is not None and torch.device(device).type != "cpu":
        return max(1, cores - 1)  # the GPU waits on decoding: every core the main process leaves
    return max(1, min(cores, 2 + max(0, cores - 5) // 4))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _mp_context():
    # fork: workers inherit the items and the preprocessing callable (which may be a bound method
    # of a model) without pickling them. Elsewhere, the platform default.
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def _hash_all(items: list[ImageItem], threads: int) -> list[bytes | str]:
    """sha256 of each item's bytes, or the reason it could not be read."""

    def one(item: ImageItem) -> bytes | str:
        try:
            return content_hash(item.read_bytes())
        except Exception as e:  # noqa: BLE001
            return read_error(e)

    if len(items) < 32 or threads <= 1:
        return [one(it) for it in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, items, chunksize=16))


class _DefaultCache:
    """The ``cache_dir`` default: the platform cache folder (``cache_folder.default_cache_dir``)."""

    def __repr__(self) -> str:
        return "DEFAULT_CACHE"


DEFAULT_CACHE: Any = _DefaultCache()


@dataclass(frozen=True)
class EmbedOptions:
    """``embed``'s options.

    cache_dir: a folder for the content-addressed cache; images whose bytes were embedded before by
        the same model (same weights, preprocessing and precision) are not computed again, so a
        killed run resumes. Default: ``$XDG_CACHE_HOME/cliplab/embeddings`` (else
        ``~/.cache/cliplab/embeddings``); None: no cache.
    batch_size: images per forward pass; None: 256 on CUDA, 64 elsewhere.
    num_workers: decode processes (0 decodes in this process); None picks ``default_num_workers``
        (none for 16 images or fewer). With decode "gpu", file-reading threads instead.
    progress: show a progress bar on stderr.
    chunk_size: new embeddings are written to the cache every ``chunk_size`` images.
    fast_jpeg: decode large JPEGs at a reduced scale that still leaves >= 2x the model's input size.
    max_pixels: images with more pixels are skipped; None: ``cliplab.data.images.DEFAULT_MAX_PIXELS``.
    decode: "auto" (on CUDA, JPEGs are decoded and preprocessed on the GPU; elsewhere with PIL in
        worker processes), "cpu" or "gpu" (torchvision's decoder on the model's device; on a CPU model
        its CPU decoder). Files that path cannot take fall back to PIL one by one.
    """

    cache_dir: str | os.PathLike | None = DEFAULT_CACHE
    batch_size: int | None = None
    num_workers: int | None = None
    progress: bool = True
    chunk_size: int = DEFAULT_CHUNK_SIZE
    fast_jpeg: bool = True
    max_pixels: int | None = None
    decode: str = "auto"

    def __post_init__(self) -> None:
        if (self.batch_size is not None and self.batch_size < 1) or self.chunk_size < 1:
            raise InputError("batch_size and chunk_size must be >= 1")


def embed(model: Any, source: Any, **options: Any) -> Features:
    """Embed every image of ``source`` with ``model`` (a ``Model`` or a spec for ``load_model``):
    a ``Features`` whose rows follow the source's order.

    source: an ``ImageSource``, anything ``open_source`` accepts (folder, manifest, shards,
        "synthetic:<n>"), or a list of image paths.
    options: the fields of ``EmbedOptions`` (cache_dir, batch_size, num_workers, progress,
        chunk_size, fast_jpeg, max_pixels, decode).
    Images that cannot be read or decoded are left out and listed in ``Features.skipped``.
    """
    opts = EmbedOptions(**options)
    if opts.cache_dir is DEFAULT_CACHE:
        from cliplab.features.cache_folder import default_cache_dir

        opts = replace(opts, cache_dir=default_cache_dir())
    run = _EmbedRun(_loaded(model), source, opts)
    run.hash()
    run.look_up()
    run.compute()
    return run.assemble()


def _loaded(model: Any) -> Any:
    """``model``, loaded with ``load_model`` when it is a spec."""
    if isinstance(model, str):
        from cliplab.models import load_model

        return load_model(model)
    return model


@dataclass(frozen=True)
class _Plan:
    """What one run resolves from its model and options."""

    device: torch.device
    batch_size: int
    chunk_size: int
    max_pixels: int
    draft: int | None  # large JPEGs are decoded keeping twice this side; None: at full size
    decode: str  # "cpu" or "gpu"
    tensor_preprocess: TensorPreprocess | None  # the preprocessing on the device, with decode "gpu"

    @classmethod
    def make(cls, model: Any, opts: EmbedOptions) -> _Plan:
        device = torch.device(getattr(model, "device", "cpu"))
        decode, tensor_preprocess = pick_decode(opts.decode, model)
        return cls(
            device=device,
            batch_size=opts.batch_size or default_batch_size(device),
            chunk_size=opts.chunk_size,
            max_pixels=DEFAULT_MAX_PIXELS if opts.max_pixels is None else opts.max_pixels,
            draft=draft_side(model) if opts.fast_jpeg else None,
            decode=decode,
            tensor_preprocess=tensor_preprocess,
        )

    def cache_policy(self) -> str:
        """The decoding choices that change the embeddings, for the cache namespace."""
        tags = (DEVICE_DECODE_TAG if self.decode == "gpu" else "", DRAFT_TAG if self.draft else "")
        return "/".join(tag for tag in tags if tag)

    def task(self, items: list[ImageItem], order: list[int], preprocess: Callable) -> DecodeTask:
        return DecodeTask(items, order, preprocess, self.max_pixels, 2 * self.draft if self.draft else None)


class _Found:
    """Per item, the sha256 of its bytes (or why they could not be read); per content, its
    embedding or why it could not be decoded."""

    def __init__(self, keys: list[bytes | str]):
        self.keys = keys
        self.failed: dict[int, str] = {i: k for i, k in enumerate(keys) if isinstance(k, str)}
        self.vectors: dict[bytes, np.ndarray] = {}
        self.bad_keys: dict[bytes, str] = {}

    def hashed(self) -> list[bytes]:
        return [k for k in self.keys if isinstance(k, bytes)]

    def hits(self) -> int:
        return sum(1 for k in self.hashed() if k in self.vectors)

    def misses(self) -> list[int]:
        """The first item of each distinct content without an embedding, in source order."""
        first: dict[bytes, int] = {}
        for i, k in enumerate(self.keys):
            if isinstance(k, bytes) and k not in self.vectors:
                first.setdefault(k, i)
        return sorted(first.values())

    def record(self, idxs: list[int], keys: list[bytes], bad: list[tuple[int, bytes | None, str]]) -> None:
        """A decoded batch: the hashes of the bytes actually decoded, and why the others failed."""
        for i, key, reason in bad:
            if key is None:
                self.failed[i] = reason
            else:
                self.bad_keys[key] = reason
                self.keys[i] = key
        for i, key in zip(idxs, keys):
            self.keys[i] = key

    def settle(self) -> list[int]:
        """The items with an embedding, in source order; every other item gets its skip reason."""
        kept = []
        for i, k in enumerate(self.keys):
            if i in self.failed:
                continue
            if k in self.bad_keys:
                self.failed[i] = self.bad_keys[k]
            elif k in self.vectors:
                kept.append(i)
            else:  # its bytes changed between hashing and decoding
                self.failed[i] = "changed while reading"
        return kept


class _EmbedRun:
    """One ``embed`` call: its stages (hash -> look up -> compute -> assemble) and what they find."""

    def __init__(self, model: Any, source: Any, opts: EmbedOptions):
        self.times = {"start": time.perf_counter()}
        self.model, self.opts = model, opts
        self.src = as_source(source)
        self.items: list[ImageItem] = list(self.src.items)
        self.plan = _Plan.make(model, opts)
        self.found = _Found([])
        self.cache: _CacheWriter | None = None
        self.timer = _Timer()
        self.hits = self.workers = self.encoded = 0

    def hash(self) -> None:
        """1. The sha256 of every item's bytes, or why they could not be read."""
        self.found = _Found(_hash_all(self.items, threads=min(8, 2 * _cores())))
        self.times["hashed"] = time.perf_counter()

    def look_up(self) -> None:
        """2. The embeddings the cache holds for these bytes under this model's namespace (identity,
        precision, decode path)."""
        if self.opts.cache_dir is not None:
            model = self.model
            ns, description = namespace_key(model.identity, model.precision, self.plan.cache_policy())
            try:
                chunks = ChunkCache(self.opts.cache_dir, ns, dim=getattr(model, "embed_dim", None), description=description)
            except OSError as e:  # a full disk, a read-only folder: the run goes on without the cache
                _without_cache(self.opts.cache_dir, e)
            else:
                self.cache = _CacheWriter(chunks)
                self.found.vectors = chunks.get_many(self.found.hashed())
        self.hits = self.found.hits()

    def compute(self) -> None:
        """3. Decode and encode each distinct content the cache lacks, adding it to the cache."""
        todo = self.found.misses()
        self.times["compute"] = time.perf_counter()
        self.workers = _worker_count(self.opts.num_workers, self.plan.device, len(todo))
        if todo:
            batches = self._batches(todo)  # workers fork here, before the progress bar starts its monitor thread
            self._encode_all(batches, _progress_bar(len(todo), self.opts.progress, self.hits))
        if self.cache is not None:
            self.cache.compact(self.plan.chunk_size)
        self.times["done"] = time.perf_counter()

    def _batches(self, todo: list[int]) -> Iterator[Batch]:
        """Decoded batches of the items ``todo``: on the model's device, or by the PIL path in workers."""
        task = self.plan.task(self.items, todo, self.model.preprocess)
        if self.plan.tensor_preprocess is None:
            return _loader_batches(DecodeDataset(task), self.plan, self.workers)
        from cliplab.features.device_decode import device_batches

        threads = max(2, self.workers)
        return device_batches(task, self.plan.tensor_preprocess, self.plan.device, self.plan.batch_size, threads)

    def _encode_all(self, batches: Iterator[Batch], bar: Any) -> None:
        encoder = _Encoder(self.model, self.cache, self.plan, partial(self._encoded, bar))
        try:
            for idxs, keys, pixels, bad, decode_seconds in batches:
                self.timer.decoded(decode_seconds, len(idxs))
                self.found.record(idxs, keys, bad)
                if bad:  # tqdm redraws even for 0, repeating its first line in a log
                    bar.update(len(bad))
                if pixels is not None:
                    encoder.add(keys, pixels)
            encoder.finish()
        finally:
            encoder.save()  # whatever was encoded is kept, even when interrupted
            bar.close()

    def _encoded(self, bar: Any, keys: list[bytes], rows: np.ndarray, seconds: float) -> None:
        self.timer.encoded(seconds, len(keys))
        self.found.vectors.update(zip(keys, rows))
        self.encoded += len(keys)
        bar.update(len(keys))

    def assemble(self) -> Features:
        """4. The rows in source order, what was left out, and the run's figures."""
        kept = self.found.settle()
        skipped = list(getattr(self.src, "skipped", []) or [])
        skipped += [Skipped(self.items[i].id, reason) for i, reason in sorted(self.found.failed.items())]
        if not kept:
            raise NothingEmbeddedError(f"nothing embedded from {getattr(self.src, 'name', 'the source')!r}: {nothing_reason(skipped)}")
        X = np.stack([self.found.vectors[self.found.keys[i]] for i in kept]).astype(np.float32, copy=False)
        stats = self._stats(len(kept), len(skipped))
        features = self._features(X, [self.items[i] for i in kept], skipped, stats)
        if skipped:
            warn(skip_summary(skipped, stats["images_total"]) + "; the list is in Features.skipped", SkippedWarning)
        return features

    def _features(self, X: np.ndarray, kept: list[ImageItem], skipped: list[Skipped], stats: dict[str, Any]) -> Features:
        items, classes = self.items, getattr(self.src, "classes", None)
        has_labels = any(it.label is not None for it in items) or bool(classes)
        return Features(
            X=X,
            ids=[it.id for it in kept],
            labels=[it.label for it in kept] if has_labels else None,
            captions=[list(it.captions) for it in kept] if any(it.captions for it in items) else None,
            meta=[dict(it.meta) for it in kept] if any(it.meta for it in items) else None,
            classes=list(classes) if classes else None,
            skipped=skipped,
            stats=stats,
            model=getattr(self.model, "name", type(self.model).__name__),
            identity=getattr(self.model, "identity", ""),
        )

    def _stats(self, embedded: int, skipped: int) -> dict[str, Any]:
        t = self.times
        total, encode_s = t["done"] - t["start"], t["done"] - t["compute"]
        return {
            "images": len(self.items),
            "images_total": len(self.items) + sum(1 for s in getattr(self.src, "skipped", []) or [] if s.kind == "image"),
            "embedded": embedded,
            "skipped": skipped,
            "cache_hits": self.hits,
            "cache_misses": self.encoded,
            "seconds": round(total, 4),
            "hash_seconds": round(t["hashed"] - t["start"], 4),
            "encode_seconds": round(encode_s, 4),
            "images_per_s": round(embedded / total, 3) if total > 0 else 0.0,
            "encode_images_per_s": round(self.encoded / encode_s, 3) if self.encoded else 0.0,
            "num_workers": self.workers,
            "batch_size": self.plan.batch_size,
            "decode": self.plan.decode,
            "torch_threads": torch.get_num_threads(),
            **self.timer.stats(),
            "precision": getattr(self.model, "precision", "fp32"),
            "corrupt_chunks": [str(p) for p in self.cache.chunks.discarded] if self.cache else [],
            "source_notes": list(getattr(self.src, "notes", []) or []),
        }


def _worker_count(num_workers: int | None, device: torch.device, todo: int) -> int:
    if num_workers is None:  # a handful of images is done before a worker process would be up
        return default_num_workers(device) if todo > SMALL_JOB else 0
    return int(num_workers)


def _loader_batches(dataset: DecodeDataset, plan: _Plan, workers: int) -> Iterator[Batch]:
    """Batches decoded by ``workers`` processes (0: in this one), fetched up to 32 images at a time."""
    fetch = max(1, min(plan.batch_size, 32))
    loader_kw: dict[str, Any] = {"batch_size": fetch, "shuffle": False, "num_workers": workers, "collate_fn": collate}
    if workers > 0:
        loader_kw.update(prefetch_factor=max(2, -(-2 * plan.batch_size // (fetch * workers))), multiprocessing_context=_mp_context())
    if plan.device.type == "cuda":
        loader_kw["pin_memory"] = True
    return iter(torch.utils.data.DataLoader(dataset, **loader_kw))


class _CacheWriter:
    """Adds chunks to the cache until a write fails (a full disk, a read-only folder): then one
    warning naming the cache folder, and the run carries on uncached."""

    def __init__(self, chunks: ChunkCache):
        self.chunks: ChunkCache = chunks
        self.failed = False

    def put(self, keys: list[bytes], embeddings: np.ndarray) -> None:
        self._write(self.chunks.put, keys, embeddings)

    def compact(self, chunk_rows: int) -> None:
        self._write(self.chunks.compact, chunk_rows)

    def _write(self, write: Callable[..., Any], *args: Any) -> None:
        if self.failed:
            return
        try:
            write(*args)
        except OSError as e:
            self.failed = True
            _without_cache(self.chunks.root, e)


def _without_cache(folder: str | os.PathLike, e: OSError) -> None:
    reason = (e.strerror or type(e).__name__).lower()
    warn(f"embedding cache {os.fspath(folder)}: cannot write ({reason}); carrying on without caching", CacheWarning)


class SkippedWarning(UserWarning):
    """Some inputs were left out of an embedding run (the list is in ``Features.skipped``)."""


_UNITS = {"row": ("manifest row", "manifest rows"), "shard": ("shard", "shards"), "image": ("image", "images"),
          "note": ("sample kept with a problem", "samples kept with a problem")}  # fmt: skip


def skip_summary(skipped: Sequence[Skipped], total_images: int) -> str:
    """One line counting what was left out, each kind in its own unit:
    '1 manifest row skipped (1 invalid JSON line); 2 of 120 images skipped (1 truncated, 1 not an image)'.

    ``total_images`` counts every image named by the source, embedded or not.
    """
    parts = []
    for kind, (one, many) in _UNITS.items():
        of_kind = [s for s in skipped if s.kind == kind]
        if not of_kind:
            continue
        counts = Counter(s.reason for s in of_kind).most_common()
        reasons = ", ".join(f"{n} {reason}" for reason, n in counts[:5])
        if len(counts) > 5:
            reasons += f", {sum(n for _, n in counts[5:])} other"
        n = len(of_kind)
        unit = one if n == 1 else many
        if kind == "image":
            parts.append(f"{n} of {total_images} {many if total_images != 1 else one} skipped ({reasons})")
        elif kind == "note":
            parts.append(f"{n} {unit} ({reasons})")
        else:
            parts.append(f"{n} {unit} skipped ({reasons})")
    return "; ".join(parts)


def nothing_reason(skipped: Sequence[Skipped]) -> str:
    """Why a run embedded nothing, in words."""
    if not any(s.kind in ("image", "row", "shard") for s in skipped):
        return "the source lists no images"
    return skip_summary(skipped, sum(1 for s in skipped if s.kind == "image"))


class _Timer:
    """CPU seconds per image spent decoding (in the workers) and wall seconds per image encoding."""

    def __init__(self):
        self.decode_s = self.encode_s = 0.0
        self.decode_n = self.encode_n = 0

    def decoded(self, seconds: float, n: int) -> None:
        self.decode_s += seconds
        self.decode_n += n

    def encoded(self, seconds: float, n: int) -> None:
        self.encode_s += seconds
        self.encode_n += n

    def stats(self) -> dict[str, Any]:
        ms = lambda s, n: round(1e3 * s / n, 2) if n else None
        return {"decode_ms_per_image": ms(self.decode_s, self.decode_n), "encode_ms_per_image": ms(self.encode_s, self.encode_n)}


class _Encoder:
    """Encodes pixels in full batches of ``plan.batch_size`` with one batch in flight (on CUDA the
    forward pass runs while this process prepares the next), hands each finished batch to ``done``
    and writes every ``plan.chunk_size`` new rows to the cache, so a killed run loses at most one
    chunk. It owns the buffers between those steps."""

    def __init__(self, model: Any, cache: _CacheWriter | None, plan: _Plan, done: Callable[[list[bytes], np.ndarray, float], None]):
        self.model, self.cache, self.done = model, cache, done
        self.batch_size, self.chunk_size = plan.batch_size, plan.chunk_size
        self.pixels: list[torch.Tensor] = []  # decoded, not yet encoded
        self.keys: list[bytes] = []
        self.in_flight: tuple[list[bytes], torch.Tensor, float] | None = None
        self.unsaved_keys: list[bytes] = []  # encoded, not yet in the cache
        self.unsaved_rows: list[np.ndarray] = []

    def add(self, keys: list[bytes], pixels: torch.Tensor) -> None:
        """Buffer a decoded batch and encode every full batch."""
        self.pixels.append(pixels)
        self.keys.extend(keys)
        while len(self.keys) >= self.batch_size:
            self._start(self.batch_size)

    def finish(self) -> None:
        """Encode what is buffered and collect every batch."""
        if self.keys:
            self._start(len(self.keys))
        self._collect()

    def save(self) -> None:
        """Write the rows encoded since the last chunk to the cache."""
        self._save(len(self.unsaved_keys))

    def _start(self, n: int) -> None:
        """Start encoding the next ``n`` buffered images, then collect the batch started before it."""
        pixels = torch.cat(self.pixels) if len(self.pixels) > 1 else self.pixels[0]
        batch, rest = pixels[:n], pixels[n:]
        t = time.perf_counter()
        rows = self.model.encode_pixels_async(batch)
        keys, self.keys = self.keys[:n], self.keys[n:]
        self.pixels = [rest] if len(rest) else []
        self._collect()
        self.in_flight = (keys, rows, t)

    def _collect(self) -> None:
        if self.in_flight is None:
            return
        keys, rows, t = self.in_flight
        self.in_flight = None
        out = rows.cpu().numpy()
        self.done(keys, out, time.perf_counter() - t)
        if self.cache is not None:
            self.unsaved_keys.extend(keys)
            self.unsaved_rows.extend(out)
            while len(self.unsaved_keys) >= self.chunk_size:
                self._save(self.chunk_size)

    def _save(self, n: int) -> None:
        if n and self.cache is not None:
            self.cache.put(self.unsaved_keys[:n], np.stack(self.unsaved_rows[:n]))
            del self.unsaved_keys[:n], self.unsaved_rows[:n]


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool, cached: int):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    desc = f"embedding ({cached} cached)" if cached else "embedding"
    return tqdm(total=total, desc=desc, unit="img", smoothing=0.1, dynamic_ncols=True)
