"""How the API is served: uvicorn's settings for `sluice api` (and the tests' servers).

uvicorn closes a keep-alive connection idle between requests (timeout_keep_alive), but waits
for ever for a request head that never comes whole: a client that opens a connection and
sends nothing, or half a request line, or a header every few seconds, holds a socket and its
buffers until it goes, and a few thousand of them starve the server (slowloris). Its
protocol here closes a connection whose request head has not arrived whole within
HEAD_TIMEOUT seconds of the connection opening or of the previous response ending. A request
in progress (an event stream included) is never cut by it. WebSockets are off: no route
takes them. Requests are parsed by httptools (llhttp, in C), not h11 (pure Python): at 200
deliveries at once h11's parsing held the event loop long enough to put /healthz's p99 over
100 ms (bench/webhook_burst.py: 101-111 ms with h11, 32-83 ms with httptools).

At shutdown uvicorn lets each response in progress finish, for up to its
timeout_graceful_shutdown; an event stream never finishes, so it alone is cut at once (its
client reconnects with Last-Event-ID, to whichever API answers next), and a stop is not
held up by an open dashboard.
"""
from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT = 10.0
ENDLESS = frozenset({"/api/events"})        # responses that end only when the client goes


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request head."""

    head_timeout = HEAD_TIMEOUT
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    def shutdown(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.scope["path"] in ENDLESS:
            self.transport.close()      # as if the client went: the app sees http.disconnect
        else:
            super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_waiting()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_overdue, self.cycle)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self, cycle_then: Any) -> None:
        # A request whose head came whole since the timer started has a new cycle (pipelined
        # ones too); the one then may still be answering, and its completion's timer covers it.
        self._head_timer = None
        answered = cycle_then is None or cycle_then.response_complete
        if self.cycle is cycle_then and answered and not self.transport.is_closing():
            self.transport.close()


def protocol_with(head_timeout: float) -> type[HeadTimeoutProtocol]:
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout": head_timeout})


def server_config(app: Any, head_timeout: float = HEAD_TIMEOUT, **options: Any) -> uvicorn.Config:
    """uvicorn's Config for the API; `options` as uvicorn.Config takes them (host, port, ...)."""
    return uvicorn.Config(app, http=protocol_with(head_timeout), ws="none", **options)
