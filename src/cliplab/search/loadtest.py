"""A bounded load test of the search service on loopback, and a server running in a thread.

    with running_server(app) as url:
        report = load_test(url, payloads, clients=8, requests=200)
    report.p50_ms, report.p99_ms, report.errors, report.qps

Only loopback addresses are accepted; every run has a fixed number of requests and a time limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np

from cliplab.errors import InputError
from cliplab.search.server import ServerLimits, server_config


@dataclass
class LoadReport:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def qps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def p50_ms(self) -> float:
        return self.percentile(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile(99)

    def line(self, clients: int) -> str:
        return (f"{clients} clients, {self.requests} requests: {self.errors} errors, {self.qps:.1f} queries/s, "
                f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms")


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InputError(f"load tests only run against this machine (127.0.0.1 or localhost), not {host!r}")


def load_test(url: str, payloads: Sequence[dict[str, Any]], *, clients: int = 8, requests: int = 200,
              path: str = "/search", headers: dict[str, str] | None = None, time_limit_s: float = 120.0) -> LoadReport:
    """``requests`` POSTs spread over ``clients`` concurrent clients, cycling through ``payloads``."""
    _check_loopback(url)
    return asyncio.run(_run(url.rstrip("/") + path, list(payloads), clients, requests, headers or {}, time_limit_s))


async def _run(url: str, payloads: list[dict], clients: int, requests: int, headers: dict, time_limit_s: float) -> LoadReport:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    counter = iter(range(requests))

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            t = time.perf_counter()
            try:
                response = await client.post(url, json=payloads[i % len(payloads)], headers=headers)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            latencies.append(1e3 * (time.perf_counter() - t))
            statuses[status] = statuses.get(status, 0) + 1
            errors += status != 200

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        await asyncio.wait_for(asyncio.gather(*(client_loop(client) for _ in range(clients))), time_limit_s)
    return LoadReport(len(latencies), errors, time.perf_counter() - start, latencies, statuses)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app: Any, port: int | None = None, startup_timeout_s: float = 30.0, limits: ServerLimits | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread (under ``limits``, as ``cliplab serve`` does);
    yields its base URL, stops it on exit."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, limits or ServerLimits(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test server did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
