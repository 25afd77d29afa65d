"""``embed``'s decode path on the model's device: batches of pixels decoded where the model runs.

File reading runs in a thread pool a few batches ahead (reads and sha256 release the GIL). Each
batch's JPEGs are decoded together by ``decode_jpegs`` and preprocessed by the model's
``TensorPreprocess`` on the model's device; the rest (see ``cliplab.data.tensor_decode``) take the
PIL path one by one and are copied over. The batches have the shape the ``DataLoader`` path yields,
so ``embed`` treats both alike.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch

from cliplab.data.images import decode_image
from cliplab.data.tensor_decode import TensorPreprocess, decode_jpegs, tensor_decodable
from cliplab.errors import BadImage
from cliplab.features.cache import content_hash
from cliplab.features.decoding import Batch, DecodeTask, read_error


def device_batches(
    task: DecodeTask, tensor_preprocess: TensorPreprocess, device: torch.device, batch_size: int, threads: int
) -> Iterator[Batch]:
    """(item indices, sha256 keys, NCHW float pixels on ``device`` | None, [(index, key, skip reason)],
    CPU seconds spent decoding) per batch of ``batch_size`` items of ``task.order``."""

    def read(i: int) -> tuple[int, bytes | None, str | None]:
        try:
            return i, task.items[i].read_bytes(), None
        except Exception as e:  # noqa: BLE001 - any read failure skips the item, as in the DataLoader path
            return i, None, read_error(e)

    ahead = max(2 * batch_size, 4 * threads)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: deque = deque()
        todo = iter(task.order)
        for i in todo:  # fill the window
            pending.append(pool.submit(read, i))
            if len(pending) >= ahead:
                break
        while pending:
            group = []
            while pending and len(group) < batch_size:
                group.append(pending.popleft().result())
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(read, nxt))
            yield _decode_group(group, task, tensor_preprocess, device)


def _decode_group(group: list, task: DecodeTask, tensor_preprocess: TensorPreprocess, device: torch.device) -> Batch:
    t = time.thread_time()
    bad: list[tuple[int, bytes | None, str]] = []
    jpegs: list[tuple[int, bytes, bytes]] = []
    others: list[tuple[int, bytes, bytes]] = []
    for i, data, error in group:
        if data is None:
            bad.append((i, None, error))
            continue
        entry = (i, content_hash(data), data)
        (jpegs if tensor_decodable(data, task.max_pixels) else others).append(entry)
    decoded = decode_jpegs([d for _, _, d in jpegs], device)
    on_device = [(i, key, im) for (i, key, _), im in zip(jpegs, decoded) if im is not None]
    others += [entry for entry, im in zip(jpegs, decoded) if im is None]  # refused: the PIL path decides

    idxs = [i for i, _, _ in on_device]
    keys = [key for _, key, _ in on_device]
    parts = [tensor_preprocess([im for _, _, im in on_device])] if on_device else []
    host = []
    for i, key, data in others:
        try:
            image = decode_image(data, str(i), task.max_pixels, min_side=task.min_side)
            host.append(task.preprocess(image))
        except BadImage as e:
            bad.append((i, key, e.reason))
            continue
        except Exception as e:  # noqa: BLE001 - a transform that chokes on this image, as in the DataLoader path
            bad.append((i, key, f"preprocessing failed ({type(e).__name__})"))
            continue
        idxs.append(i)
        keys.append(key)
    if host:
        batch = torch.stack(host)
        if device.type == "cuda":
            batch = batch.pin_memory().to(device, non_blocking=True)
        parts.append(batch.to(device))
    pixels = torch.cat(parts) if len(parts) > 1 else (parts[0] if parts else None)
    return idxs, keys, pixels, bad, time.thread_time() - t
