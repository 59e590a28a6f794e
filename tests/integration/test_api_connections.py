"""Connections to the API that never finish a request are let go (api/server.py), through
uvicorn as `sluice api` configures it, with raw sockets for the clients that misbehave."""
from __future__ import annotations

import logging
import socket

import httpx

from orchestrator.api import observe
from tests.helpers import FUNCTION_APP
from tests.integration.test_events_stream import following
from tests.servers.api_server import serving

HEAD_TIMEOUT = 0.5
PATIENCE = 20.0         # how long a test client waits for the server to hang up


def hung_up(sock: socket.socket) -> bool:
    """Whether the server closes the connection (rather than keeping it open for ever)."""
    sock.settimeout(PATIENCE)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_a_client_that_sends_nothing_or_half_a_request_head_is_disconnected(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    with serving(services, head_timeout=HEAD_TIMEOUT) as base:
        address = ("127.0.0.1", int(base.rpartition(":")[2]))
        with socket.create_connection(address) as silent, socket.create_connection(address) as halting:
            halting.sendall(b"GET /api/apps HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")

            assert hung_up(silent) and hung_up(halting)


def test_a_kept_alive_connection_that_starts_a_second_request_and_stalls_is_disconnected(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    with serving(services, head_timeout=HEAD_TIMEOUT) as base:
        with socket.create_connection(("127.0.0.1", int(base.rpartition(":")[2]))) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            first = sock.recv(65536)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")

            assert first.startswith(b"HTTP/1.1 200 ") and hung_up(sock)


def test_an_event_stream_lasts_longer_than_the_time_allowed_for_a_request_head(workspace, monkeypatch):
    _, services = workspace.app_with(FUNCTION_APP)
    monkeypatch.setattr(observe, "HEARTBEAT_SECONDS", HEAD_TIMEOUT / 2)
    with serving(services, head_timeout=HEAD_TIMEOUT) as base, following(base) as messages:
        heartbeats = 0
        for message in messages:        # the stream ends (and the loop with it) if it is cut
            heartbeats += message.get("comment") == "heartbeat"
            if heartbeats == 6:
                break

        assert httpx.get(f"{base}/healthz").status_code == 200

    assert heartbeats == 6


def test_a_shutdown_ends_an_open_event_stream_at_once_not_at_the_graceful_timeout(workspace, caplog):
    """uvicorn waits for responses in progress; an event stream would hold a stop (of
    `sluice up` too) until the timeout cancelled it."""
    _, services = workspace.app_with(FUNCTION_APP)
    uvicorn_log = logging.getLogger("uvicorn.error")       # uvicorn's own config: no propagation
    try:
        with serving(services) as base:
            uvicorn_log.addHandler(caplog.handler)          # once uvicorn has configured it
            sock = socket.create_connection(("127.0.0.1", int(base.rpartition(":")[2])))
            sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with sock:
            assert hung_up(sock)
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert "graceful shutdown exceeded" not in caplog.text
