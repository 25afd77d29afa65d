"""Embedding on Ray Data: the same ``Features`` as ``embed``, for collections beyond one machine.

    feats = embed_ray("cliplab:shapes-tiny", "photos/", address=None)   # None: a local Ray runtime

The source is listed here (ids, labels, captions, metadata stay on the driver); Ray reads the
bytes in tasks (``read_bytes`` of each item), and a pool of model actors (one per GPU, or one
per CPU slot left after the read tasks) decodes, preprocesses and encodes each batch with the
same ``decode_image`` and preprocessing as the local engine. Rows come back with their item
number, so the output follows the source's order whatever order Ray finishes them in.

Sizing the pool: on a 2-CPU machine two 1-CPU actors take every CPU and the read tasks never run
(a hang, measured: reference dense_and_retrieval.md, "Ray Data on a 2-CPU machine"), so the
actors leave at least one CPU to the readers, and a run that still stalls ends with an error
after ``timeout_s``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cliplab.data.items import ImageItem, Skipped
from cliplab.errors import CliplabError
from cliplab.features.features import Features
from cliplab.features.pipeline import as_source, draft_side

DEFAULT_TIMEOUT_S = 3600.0


class RayEngineError(CliplabError, RuntimeError):
    """Ray could not start, or an embedding run on it did not finish in time."""


class _ReadBytes:
    """Ray task body: item numbers -> their encoded bytes (empty when unreadable)."""

    def __init__(self, items: list[ImageItem]):
        self.items = items

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        data, errors = [], []
        for i in batch["row"]:
            try:
                data.append(self.items[int(i)].read_bytes())
                errors.append("")
            except FileNotFoundError:
                data.append(b"")
                errors.append("file not found")
            except OSError:
                data.append(b"")
                errors.append("unreadable")
        return {"row": batch["row"], "data": np.array(data, dtype=object), "error": np.array(errors, dtype=object)}


class _EmbedActor:
    """Ray actor: loads the model once; bytes -> decoded, preprocessed, encoded rows."""

    def __init__(self, spec: str, pretrained: str | None, precision: str, threads: int):
        import torch

        from cliplab.models import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(spec, pretrained=pretrained, precision=precision)
        self.draft = draft_side(self.model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        from cliplab.data.images import DEFAULT_MAX_PIXELS, decode_image
        from cliplab.errors import BadImage

        pixels, good, reasons = [], [], []
        for row, data, error in zip(batch["row"], batch["data"], batch["error"]):
            reason = error or ""
            if not reason:
                try:
                    image = decode_image(data, "", DEFAULT_MAX_PIXELS, min_side=2 * self.draft if self.draft else None)
                    pixels.append(self.model.preprocess(image))
                    good.append(True)
                except BadImage as exc:
                    reason = exc.reason
            if reason:
                good.append(False)
            reasons.append(reason)
        dim = self.model.embed_dim
        vectors = np.zeros((len(reasons), dim), np.float32)
        if pixels:
            vectors[np.array(good)] = self.model.encode_pixels(torch.stack(pixels))
        return {"row": batch["row"], "vector": list(vectors), "error": np.array(reasons, dtype=object)}


def _pool_size(resources: dict[str, float]) -> tuple[int, dict[str, float]]:
    """(actors, per-actor resources): one per GPU, else one per CPU with one CPU left to the readers."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    cpus = int(resources.get("CPU", 1))
    return max(1, cpus - 1), {"num_cpus": 1}


@dataclass(frozen=True)
class RayOptions:
    """``embed_ray``'s options.

    pretrained, precision: what the actors load with the model's spec (for a loaded ``Model``, its
        own precision is used).
    address: the Ray cluster to join; None starts a local runtime.
    batch_size: images per read task and per forward pass.
    num_cpus: CPUs of the local runtime (default: all); ignored with an ``address``.
    timeout_s: the run ends with ``RayEngineError`` when it has not finished by then.
    logging_level: Ray's own log level (``ray.init(logging_level=...)``; Ray's default is INFO),
        when the runtime is started or joined here.
    """

    pretrained: str | os.PathLike | None = None
    precision: str = "fp32"
    address: str | None = None
    batch_size: int = 64
    num_cpus: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    logging_level: int = logging.INFO


def embed_ray(model: Any, source: Any, **options: Any) -> Features:
    """Embed ``source`` on Ray with ``model`` (a spec, or a loaded ``Model`` whose spec and precision
    the actors load again); ``options`` are the fields of ``RayOptions``."""
    opts = RayOptions(**options)
    try:
        import ray
    except ImportError as exc:
        raise RayEngineError("the ray engine needs Ray: pip install 'ray[data]'") from exc
    from cliplab.models import load_model

    if isinstance(model, str):
        reference = load_model(model, pretrained=opts.pretrained, precision=opts.precision, device="cpu")  # checks the spec here, once
    else:
        reference, opts = model, replace(opts, precision=model.precision)
    src = as_source(source)
    items = list(src.items)
    started_here = not ray.is_initialized()
    if started_here:
        _start(ray, opts)
    t0 = time.perf_counter()
    try:
        actors, per_actor = _pool_size(ray.cluster_resources())
        rows = _run(ray, items, reference.name, opts, actors, per_actor)
    finally:
        if started_here:
            ray.shutdown()
    return _assemble(items, src, rows, reference, time.perf_counter() - t0, actors)


def _start(ray: Any, opts: RayOptions) -> None:
    """Start a local Ray runtime, or join the one at ``opts.address``."""
    try:
        ray.init(address=opts.address, num_cpus=None if opts.address else opts.num_cpus, include_dashboard=False,
                 log_to_driver=False, logging_level=opts.logging_level, ignore_reinit_error=True)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - Ray raises many types for a cluster it cannot join
        raise RayEngineError(f"cannot start or join Ray at {opts.address or 'a local runtime'}: {exc}") from exc


def _run(ray: Any, items: list[ImageItem], spec: str, opts: RayOptions, actors: int, per_actor: dict[str, float]) -> list[dict]:
    """The rows of a Ray Data pipeline: read tasks, then ``actors`` model actors; at most ``opts.timeout_s``."""
    pretrained = None if opts.pretrained is None else os.fspath(opts.pretrained)
    ds = ray.data.from_items([{"row": i} for i in range(len(items))], override_num_blocks=max(1, min(len(items), 4 * actors)))
    ds = ds.map_batches(_ReadBytes, fn_constructor_args=(items,), batch_size=opts.batch_size,
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.25)  # fmt: skip
    ds = ds.map_batches(
        _EmbedActor, fn_constructor_args=(spec, pretrained, opts.precision, int(per_actor["num_cpus"])),
        batch_size=opts.batch_size, compute=ray.data.ActorPoolStrategy(size=actors), **per_actor,
    )  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(ds.take_all)
        try:
            return future.result(timeout=opts.timeout_s)
        except concurrent.futures.TimeoutError as exc:
            raise RayEngineError(f"the Ray embedding run did not finish within {opts.timeout_s:.0f} s; check the cluster's free CPUs/GPUs") from exc


def _assemble(items: list[ImageItem], src: Any, rows: list[dict], model: Any, seconds: float, actors: int) -> Features:
    by_row = {int(r["row"]): r for r in rows}
    kept, vectors, skipped = [], [], list(getattr(src, "skipped", []) or [])
    for i, item in enumerate(items):
        r = by_row.get(i)
        if r is None or r["error"]:
            skipped.append(Skipped(item.id, r["error"] if r is not None else "lost by the ray run"))
        else:
            kept.append(item)
            vectors.append(np.asarray(r["vector"], np.float32))
    X = np.stack(vectors) if vectors else np.zeros((0, model.embed_dim), np.float32)
    return Features(
        X=X,
        ids=[it.id for it in kept],
        labels=[it.label for it in kept] if any(it.label is not None for it in items) or getattr(src, "classes", None) else None,
        captions=[list(it.captions) for it in kept] if any(it.captions for it in items) else None,
        meta=[dict(it.meta) for it in kept] if any(it.meta for it in items) else None,
        classes=list(src.classes) if getattr(src, "classes", None) else None,
        skipped=skipped,
        stats={"images": len(items), "embedded": len(kept), "skipped": len(skipped), "seconds": round(seconds, 4),
               "engine": "ray", "actors": actors, "precision": model.precision},
        model=model.name,
        identity=model.identity,
    )
