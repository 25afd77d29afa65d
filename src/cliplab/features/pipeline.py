"""``embed``: images -> ``Features``, decoding in worker processes while the model runs here.

Three steps:

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
   work and the next run resumes.

The workers re-hash the bytes they decode, so an embedding is always stored under the hash of the
exact bytes it was computed from.

Where the time goes (2-core AMD EPYC, ViT-B-32 fp32 at 224 px, batch 64; benchmarks/embed_throughput.py):
the encoder takes ~64 ms/img at the machine's matmul peak, so for 400x300 JPEGs (decode+preprocess
~3.4 ms/img) overlapping decoding gains nothing measurable on an idle machine. What pays:
- large JPEGs are decoded at a reduced scale (libjpeg DCT scaling, keeping >= 2x the model input):
  12 MP photos 194 -> 48 ms/img; with the overlap, 2.45x the plain loop (embeddings: cosine >= 0.99999);
- preprocessing runs with one torch thread: on a busy machine torch's multi-threaded small ops wait
  at thread barriers (3.5 -> 50 ms/img with 2 threads when other processes hold the cores).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import torch

from cliplab.data.images import decode_image
from cliplab.data.items import ImageItem, Skipped
from cliplab.data.sources.base import read_file
from cliplab.errors import InputError, NothingEmbeddedError, warn
from cliplab.features.cache import CacheWarning, ChunkCache, content_hash, namespace_key
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
    from cliplab.data.tensor_decode import TensorPreprocess

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


# --- decoding (runs in the workers) ---------------------------------------------------------------
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


class _DecodeDataset(torch.utils.data.Dataset):
    """Item index -> (index, sha256, CHW tensor | None, skip reason | None)."""

    def __init__(self, items: list[ImageItem], order: list[int], preprocess: Callable, max_pixels, draft):
        self.items, self.order, self.preprocess = items, order, preprocess
        self.max_pixels, self.draft = max_pixels, draft

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int):
        from cliplab.data.images import BadImage

        i = self.order[k]
        item = self.items[i]
        try:
            data = item.read_bytes()
        except Exception as e:  # noqa: BLE001
            return i, None, None, _read_error(e)
        key = content_hash(data)
        try:
            image = decode_image(data, item.id, self.max_pixels, min_side=2 * self.draft if self.draft else None)
        except BadImage as e:
            return i, key, None, e.reason
        try:
            pixels = self.preprocess(image)
        except Exception as e:  # noqa: BLE001 - a transform that chokes on this image
            return i, key, None, f"preprocessing failed ({type(e).__name__})"
        return i, key, pixels, None


class _TimedDataset(torch.utils.data.Dataset):
    """The decode dataset, also reporting the CPU seconds each image took (to plan threads)."""

    def __init__(self, inner: _DecodeDataset):
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, k: int):
        t = time.thread_time()  # CPU time: what decoding costs, however busy the machine is
        i, key, px, reason = self.inner[k]
        return i, key, px, reason, time.thread_time() - t


def _collate(batch):
    good = [(i, key, px, dt) for i, key, px, _, dt in batch if px is not None]
    bad = [(i, key, reason) for i, key, px, reason, _ in batch if px is None]
    pixels = torch.stack([g[2] for g in good]) if good else None
    return [g[0] for g in good], [g[1] for g in good], pixels, bad, sum(g[3] for g in good)


def _read_error(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "file not found"
    return "unreadable"


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
            return _read_error(e)

    if len(items) < 32 or threads <= 1:
        return [one(it) for it in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, items, chunksize=16))


class _DefaultCache:
    """The ``cache_dir`` default: the platform cache folder (``cache_folder.default_cache_dir``)."""

    def __repr__(self) -> str:
        return "DEFAULT_CACHE"


DEFAULT_CACHE: Any = _DefaultCache()


def embed(
    model,
    source,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE,
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    fast_jpeg: bool = True,
    max_pixels: int | None = None,
    decode: str = "auto",
) -> Features:
    """Embed every image of ``source`` with ``model`` (a ``Model`` or a spec for ``load_model``):
    a ``Features`` whose rows follow the source's order.

    source: an ``ImageSource``, anything ``open_source`` accepts (folder, manifest, shards,
        "synthetic:<n>"), or a list of image paths.
    cache_dir: a folder for the content-addressed cache; images whose bytes were embedded before by
        the same model (same weights, preprocessing and precision) are not computed again, so a
        killed run resumes. Default: ``$XDG_CACHE_HOME/cliplab/embeddings`` (else
        ``~/.cache/cliplab/embeddings``); None: no cache.
    batch_size: images per forward pass; None: 256 on CUDA, 64 elsewhere.
    num_workers: decode processes (0 decodes in this process); None picks ``default_num_workers``
        (none for 16 images or fewer). With decode "gpu", file-reading threads instead.
    decode: "auto" (on CUDA, JPEGs are decoded and preprocessed on the GPU; elsewhere with PIL in
        worker processes), "cpu" or "gpu" (torchvision's decoder on the model's device; on a CPU model
        its CPU decoder). Files that path cannot take fall back to PIL one by one.
    chunk_size: new embeddings are written to the cache every ``chunk_size`` images.
    fast_jpeg: decode large JPEGs at a reduced scale that still leaves >= 2x the model's input size.
    Images that cannot be read or decoded are left out and listed in ``Features.skipped``.
    """
    from cliplab.data.images import DEFAULT_MAX_PIXELS

    if (batch_size is not None and batch_size < 1) or chunk_size < 1:
        raise InputError("batch_size and chunk_size must be >= 1")
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if cache_dir is DEFAULT_CACHE:
        from cliplab.features.cache_folder import default_cache_dir

        cache_dir = default_cache_dir()
    if isinstance(model, str):
        from cliplab.models import load_model

        model = load_model(model)
    t_start = time.perf_counter()
    src = as_source(source)
    items: list[ImageItem] = list(src.items)
    device = torch.device(getattr(model, "device", "cpu"))
    draft = draft_side(model) if fast_jpeg else None
    batch_size = batch_size or default_batch_size(device)
    decode_path, tensor_preprocess = pick_decode(decode, model)

    # 1. hash -------------------------------------------------------------------------------------
    keys = _hash_all(items, threads=min(8, 2 * _cores()))
    failed: dict[int, str] = {i: k for i, k in enumerate(keys) if isinstance(k, str)}
    t_hashed = time.perf_counter()

    # 2. look up ------------------------------------------------------------------------------------
    cache = None
    vectors: dict[bytes, np.ndarray] = {}
    if cache_dir is not None:
        identity = model.identity
        policy = "/".join(tag for tag in (DEVICE_DECODE_TAG if decode_path == "gpu" else "", DRAFT_TAG if draft else "") if tag)
        ns, description = namespace_key(identity, model.precision, policy)
        try:
            cache = _CacheWriter(ChunkCache(cache_dir, ns, dim=getattr(model, "embed_dim", None), description=description))
        except OSError as e:  # a full disk, a read-only folder: the run goes on without the cache
            _without_cache(cache_dir, e)
        else:
            vectors = cache.chunks.get_many(k for k in keys if isinstance(k, bytes))
    first_item: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        if isinstance(k, bytes) and k not in vectors:
            first_item.setdefault(k, i)
    todo = sorted(first_item.values())
    hits = sum(1 for k in keys if isinstance(k, bytes) and k in vectors)

    # 3. compute ------------------------------------------------------------------------------------
    bad_keys: dict[bytes, str] = {}
    forward_images = 0
    t_compute = time.perf_counter()
    dataset = _TimedDataset(_DecodeDataset(items, todo, model.preprocess, max_pixels, draft))
    if num_workers is None:  # a handful of images is done before a worker process would be up
        workers = default_num_workers(device) if len(todo) > SMALL_JOB else 0
    else:
        workers = int(num_workers)
    timer = _Timer()
    if todo:
        forward_images = _compute(
            model, dataset, keys, vectors, bad_keys, failed, cache,
            batch_size=batch_size, workers=workers, chunk_size=chunk_size,
            progress=progress, cached=hits, timer=timer, tensor_preprocess=tensor_preprocess,
        )
    if cache is not None:
        cache.compact(chunk_size)
    t_done = time.perf_counter()

    # assemble, in source order ------------------------------------------------------------------------
    rows, kept = [], []
    for i, k in enumerate(keys):
        if i in failed:
            continue
        if k in bad_keys:
            failed[i] = bad_keys[k]
        elif k in vectors:
            rows.append(vectors[k])
            kept.append(i)
        else:  # its bytes changed between hashing and decoding
            failed[i] = "changed while reading"
    dim = int(getattr(model, "embed_dim", 0) or (rows[0].shape[0] if rows else 0))
    X = np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, dim), np.float32)
    kept_items = [items[i] for i in kept]
    skipped = list(getattr(src, "skipped", []) or [])
    skipped += [Skipped(items[i].id, reason) for i, reason in sorted(failed.items())]
    if not kept:
        raise NothingEmbeddedError(f"nothing embedded from {getattr(src, 'name', 'the source')!r}: {nothing_reason(skipped)}")
    has_labels = any(it.label is not None for it in items) or bool(getattr(src, "classes", None))
    has_captions = any(it.captions for it in items)
    has_meta = any(it.meta for it in items)
    total = t_done - t_start
    stats = {
        "images": len(items),
        "images_total": len(items) + sum(1 for s in getattr(src, "skipped", []) or [] if s.kind == "image"),
        "embedded": len(kept),
        "skipped": len(skipped),
        "cache_hits": hits,
        "cache_misses": forward_images,
        "seconds": round(total, 4),
        "hash_seconds": round(t_hashed - t_start, 4),
        "encode_seconds": round(t_done - t_compute, 4),
        "images_per_s": round(len(kept) / total, 3) if total > 0 else 0.0,
        "encode_images_per_s": round(forward_images / (t_done - t_compute), 3) if forward_images else 0.0,
        "num_workers": workers,
        "batch_size": batch_size,
        "decode": decode_path,
        "torch_threads": torch.get_num_threads(),
        **timer.stats(),
        "precision": getattr(model, "precision", "fp32"),
        "corrupt_chunks": [str(p) for p in cache.chunks.discarded] if cache else [],
        "source_notes": list(getattr(src, "notes", []) or []),
    }
    features = Features(
        X=X,
        ids=[it.id for it in kept_items],
        labels=[it.label for it in kept_items] if has_labels else None,
        captions=[list(it.captions) for it in kept_items] if has_captions else None,
        meta=[dict(it.meta) for it in kept_items] if has_meta else None,
        classes=list(src.classes) if getattr(src, "classes", None) else None,
        skipped=skipped,
        stats=stats,
        model=getattr(model, "name", type(model).__name__),
        identity=getattr(model, "identity", ""),
    )
    if skipped:
        warn(skip_summary(skipped, stats["images_total"]) + "; the list is in Features.skipped", SkippedWarning)
    return features


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


def _compute(
    model, dataset, keys, vectors, bad_keys, failed, cache, *, batch_size, workers, chunk_size, progress, cached, timer,
    tensor_preprocess=None,
) -> int:
    """Decode ``dataset`` (in workers, or on the model's device when ``tensor_preprocess`` is given)
    and encode full batches here; returns the number of images encoded."""
    if tensor_preprocess is not None:
        return _run(model, _device_batches(model, dataset.inner, tensor_preprocess, batch_size, workers), len(dataset),
                    keys, vectors, bad_keys, failed, cache, batch_size=batch_size, in_process=False,
                    chunk_size=chunk_size, progress=progress, cached=cached, timer=timer)  # fmt: skip
    fetch = max(1, min(batch_size, 32))
    loader_kw: dict[str, Any] = {"batch_size": fetch, "shuffle": False, "num_workers": workers, "collate_fn": _collate}
    if workers > 0:
        loader_kw.update(prefetch_factor=max(2, -(-2 * batch_size // (fetch * workers))), multiprocessing_context=_mp_context())
    if getattr(model, "device", torch.device("cpu")).type == "cuda":
        loader_kw["pin_memory"] = True
    loader = torch.utils.data.DataLoader(dataset, **loader_kw)
    batches = iter(loader)  # workers fork here, before the progress bar starts its monitor thread
    return _run(model, batches, len(dataset), keys, vectors, bad_keys, failed, cache, batch_size=batch_size,
                in_process=workers == 0, chunk_size=chunk_size, progress=progress, cached=cached, timer=timer)  # fmt: skip


def _device_batches(model, dataset: "_DecodeDataset", tensor_preprocess, batch_size: int, threads: int):
    from cliplab.features.device_decode import device_batches

    min_side = 2 * dataset.draft if dataset.draft else None
    return device_batches(
        dataset.items, dataset.order, dataset.preprocess, tensor_preprocess, torch.device(model.device),
        dataset.max_pixels, min_side, batch_size, threads=max(2, threads), read_error=_read_error,
    )  # fmt: skip


def _run(model, batches, total, keys, vectors, bad_keys, failed, cache, *, batch_size, in_process, chunk_size,
         progress, cached, timer) -> int:  # fmt: skip
    """Encode the pixel batches of ``batches`` in full ``batch_size`` batches, store and cache the rows."""
    bar = _progress_bar(total, progress, cached)
    buf_px: list[torch.Tensor] = []
    buf_keys: list[bytes] = []
    pending_keys: list[bytes] = []
    pending_vecs: list[np.ndarray] = []
    encoded = 0
    in_flight: list[tuple[list[bytes], torch.Tensor, float]] = []  # at most one batch

    def run_batch(n: int) -> None:
        """Start encoding the next ``n`` buffered images, then store the batch started before it
        (on CUDA the forward pass runs while this process prepares the next batch)."""
        nonlocal buf_px, buf_keys
        pixels = torch.cat(buf_px) if len(buf_px) > 1 else buf_px[0]
        batch, rest = pixels[:n], pixels[n:]
        t = time.perf_counter()
        rows = model.encode_pixels_async(batch)
        batch_keys, buf_keys = buf_keys[:n], buf_keys[n:]
        buf_px = [rest] if len(rest) else []
        finish_batch()
        in_flight.append((batch_keys, rows, t))

    def finish_batch() -> None:
        nonlocal encoded
        if not in_flight:
            return
        batch_keys, rows, t = in_flight.pop()
        out = rows.cpu().numpy()
        n = len(batch_keys)
        timer.encoded(time.perf_counter() - t, n)
        for key, vec in zip(batch_keys, out):
            vectors[key] = vec
        encoded += n
        if cache is not None:
            pending_keys.extend(batch_keys)
            pending_vecs.extend(out)
            while len(pending_keys) >= chunk_size:
                flush(chunk_size)
        bar.update(n)

    def flush(n: int) -> None:
        if n:
            cache.put(pending_keys[:n], np.stack(pending_vecs[:n]))
            del pending_keys[:n], pending_vecs[:n]

    try:
        buffered = 0
        while True:
            # decoding in this process: one torch thread for the small preprocessing ops (with
            # several, each op waits on a thread barrier; on a busy machine that costs more than
            # the op), all of them again for the encoder
            with _torch_threads(1 if in_process else None):
                got = next(batches, None)
            if got is None:
                break
            idxs, new_keys, pixels, bad, decode_seconds = got
            timer.decoded(decode_seconds, len(idxs))
            for i, key, reason in bad:
                if key is None:
                    failed[i] = reason
                else:
                    bad_keys[key] = reason
                    keys[i] = key
            if bad:  # tqdm redraws even for 0, repeating its first line in a log
                bar.update(len(bad))
            for i, key in zip(idxs, new_keys):
                keys[i] = key  # the hash of the bytes actually decoded
            if pixels is not None:
                buf_px.append(pixels)
                buf_keys.extend(new_keys)
                buffered += len(new_keys)
            while buffered >= batch_size:
                run_batch(batch_size)
                buffered -= batch_size
        if buffered:
            run_batch(buffered)
        finish_batch()
    finally:
        if cache is not None and pending_keys:
            flush(len(pending_keys))  # whatever was encoded is kept, even when interrupted
        bar.close()
    return encoded


class _torch_threads:
    def __init__(self, n: int | None):
        self.n, self.before = n, None

    def __enter__(self):
        if self.n is not None and torch.get_num_threads() != self.n:
            self.before = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.before is not None:
            torch.set_num_threads(self.before)


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
