"""Dynamic batching: concurrent requests share one forward pass.

Each request puts its input on a queue and awaits a future. One worker task takes the first
waiting input, gathers whatever else arrives within ``max_wait_s`` (up to ``max_batch``), runs the
batch function once in a thread (so the event loop keeps accepting requests) and hands each
request its row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class MicroBatcher:
    """``await batcher(x)`` -> row of ``fn([x, ...])``; ``batches``/``items`` count the passes."""

    def __init__(self, fn: Callable[[Sequence[Any]], np.ndarray], max_batch: int = 32, max_wait_s: float = 0.002):
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, max_wait_s
        self.batches = 0
        self.items = 0
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, x: Any) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._loop is not loop:
            # one worker per event loop (a test client and a server may each run the same app)
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._run())
        future = loop.create_future()
        await self._queue.put((x, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
                except asyncio.TimeoutError:
                    break
            batch = [(x, f) for x, f in batch if not f.cancelled()]
            if not batch:
                continue
            try:
                out = await asyncio.to_thread(self.fn, [x for x, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which re-raises it
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, f), row in zip(batch, out):
                if not f.done():
                    f.set_result(row)

    async def close(self) -> None:
        """Stop the worker of the current event loop (at the app's shutdown)."""
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._worker = None
