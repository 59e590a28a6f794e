"""Sluice's API served by a real uvicorn on a free loopback port, in a thread of the test
process (git, browsers and event-stream clients need a real server, not TestClient)."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from orchestrator.api import create_app
from orchestrator.api.server import HEAD_TIMEOUT, server_config
from orchestrator.runtime.services import Services
from tests.helpers import wait_for


@contextmanager
def serving(services: Services, api: FastAPI | None = None, head_timeout: float = HEAD_TIMEOUT,
            port: int = 0) -> Iterator[str]:
    """Yields the base URL of `api` (by default Sluice's API for `services`), served as
    `sluice api` serves it, on `port` (0: a free one). At shutdown requests in progress get
    2 s (event streams none)."""
    config = server_config(api or create_app(services), head_timeout, log_level="warning", lifespan="off",
                           timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say it, and without it
    # Nagle's algorithm and the client's delayed ACK held every answer ~40 ms
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, what="the API to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
