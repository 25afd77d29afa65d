"""Running the service with uvicorn under limits on slow and numerous connections.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``), the size of a request's line
and headers (``h11_max_incomplete_event_size``) and in-flight requests (``limit_concurrency``: 503
beyond), but a connection that sends its headers slowly, or never, stays open for ever. The
protocol here adds a deadline for the request line and headers (the slow-loris defence of nginx's
``client_header_timeout``) and closes connections beyond ``max_connections`` at once, never more
than the process's file limit allows; the service's middleware bounds the time to read a body.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from functools import partial
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

FD_RESERVE = 64  # file descriptors kept free for the index, the images, logs


@dataclass(frozen=True)
class ServerLimits:
    """What one client may hold: seconds to send the headers, to send the body, to stay idle between
    requests, and how many connections are open at once."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: int = 5
    max_connections: int = 256
    max_header_bytes: int = 16_384

    def connection_cap(self) -> int:
        """``max_connections``, lowered to fit the process's open-file limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return self.max_connections if soft == resource.RLIM_INFINITY else max(1, min(self.max_connections, soft - FD_RESERVE))


def server_config(app: Any, host: str, port: int, limits: ServerLimits = ServerLimits(), **kw: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` that serves ``app`` under ``limits``."""
    cap = limits.connection_cap()
    return uvicorn.Config(
        app, host=host, port=port, http=partial(GuardedH11Protocol, header_timeout_s=limits.header_timeout_s, cap=cap),
        timeout_keep_alive=limits.keep_alive_s, h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=cap + 1, **kw,  # uvicorn counts open connections too: 503 only beyond the cap
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers and a connection cap."""

    def __init__(self, *args: Any, header_timeout_s: float, cap: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.header_timeout_s, self.cap = header_timeout_s, cap
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.cap:
            transport.close()
        else:
            self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:  # the headers are in
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # the next request's headers are due (the base class may start that request now)
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
