"""What ``embed`` decodes (``DecodeTask``) and how the PIL path decodes it in ``DataLoader`` workers.

The device path (``device_decode``) takes the same ``DecodeTask`` and yields batches of the same shape
as ``collate``: (item indices, sha256 keys, NCHW pixels | None, [(index, key | None, skip reason)],
CPU seconds spent decoding).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cliplab.data.images import decode_image
from cliplab.data.items import ImageItem
from cliplab.errors import BadImage
from cliplab.features.cache import content_hash

Batch = tuple[list[int], list[bytes], "torch.Tensor | None", list[tuple[int, "bytes | None", str]], float]


@dataclass(frozen=True)
class DecodeTask:
    """The items at ``order`` to decode with ``preprocess``: at most ``max_pixels`` each, JPEGs at least
    twice ``min_side`` on both sides at a reduced scale that keeps ``min_side`` (None: full size)."""

    items: list[ImageItem]
    order: list[int]
    preprocess: Callable
    max_pixels: int | None
    min_side: int | None


def read_error(e: BaseException) -> str:
    """The skip reason for an item whose bytes could not be read."""
    return "file not found" if isinstance(e, FileNotFoundError) else "unreadable"


class DecodeDataset(torch.utils.data.Dataset):
    """k -> (item index, sha256 | None, CHW tensor | None, skip reason | None, CPU seconds it took)."""

    def __init__(self, task: DecodeTask):
        self.task = task

    def __len__(self) -> int:
        return len(self.task.order)

    def __getitem__(self, k: int) -> tuple[int, bytes | None, torch.Tensor | None, str | None, float]:
        t = time.thread_time()  # CPU time: what decoding costs, however busy the machine is
        i = self.task.order[k]
        key, pixels, reason = self._decode(self.task.items[i])
        return i, key, pixels, reason, time.thread_time() - t

    def _decode(self, item: ImageItem) -> tuple[bytes | None, torch.Tensor | None, str | None]:
        """(sha256 of the bytes read, pixels, None) or (sha256 | None, None, skip reason)."""
        try:
            data = item.read_bytes()
        except Exception as e:  # noqa: BLE001
            return None, None, read_error(e)
        key = content_hash(data)
        try:
            image = decode_image(data, item.id, self.task.max_pixels, min_side=self.task.min_side)
        except BadImage as e:
            return key, None, e.reason
        try:
            return key, self.task.preprocess(image), None
        except Exception as e:  # noqa: BLE001 - a transform that chokes on this image
            return key, None, f"preprocessing failed ({type(e).__name__})"


def collate(batch: list[tuple]) -> Batch:
    """``DecodeDataset`` samples -> one batch (see the module docstring)."""
    good = [(i, key, px, dt) for i, key, px, _, dt in batch if px is not None]
    bad = [(i, key, reason) for i, key, px, reason, _ in batch if px is None]
    pixels = torch.stack([g[2] for g in good]) if good else None
    return [g[0] for g in good], [g[1] for g in good], pixels, bad, sum(g[3] for g in good)
