"""A webhook receiver (or a health endpoint) on a free loopback port, for the notifier's tests: it records every
request (method, path, headers, body) as it arrives and answers as the test scripts — a list
of answers taken in turn (the last one repeating) or a function of the request — after a
`delay`, and only while its `gate` is open (a test closes it to hold a delivery in flight)."""
from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.helpers import wait_for

HELD_AT_MOST = 120.0        # a closed gate is a test's doing: nothing waits longer


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]         # names lower-cased
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.headers.get("x-sluice-event", "")

    @property
    def delivery(self) -> str:
        return self.headers.get("x-sluice-delivery", "")


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = "ok"
    headers: tuple[tuple[str, str], ...] = ()


class Receiver:
    def __init__(self, url: str):
        self.url = url
        self.answers: list[Answer] | Callable[[Received], Answer] = [Answer()]
        self.delay = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._answered = 0

    def answer(self, request: Received) -> Answer:
        with self._lock:
            self.received.append(request)
            if callable(self.answers):
                return self.answers(request)
            answer = self.answers[min(self._answered, len(self.answers) - 1)]
            self._answered += 1
            return answer

    def events(self) -> list[str]:
        return [r.event for r in list(self.received)]

    def wait_until(self, count: int, timeout: float = 30) -> list[Received]:
        """The requests once `count` or more have come."""
        return wait_for(lambda: len(self.received) >= count and list(self.received), timeout,
                        what=f"{count} requests at the receiver (got {len(self.received)})")


@contextmanager
def receiver() -> Iterator[Receiver]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}")  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.receiver  # type: ignore[attr-defined]
    finally:
        server.receiver.gate.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"           # keep-alive, as receivers behind proxies answer

    def do_POST(self) -> None:      # noqa: N802 (http.server's name)
        script: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = script.answer(Received(self.command, self.path,
                                        {k.lower(): v for k, v in self.headers.items()}, body))
        time.sleep(script.delay)
        script.gate.wait(HELD_AT_MOST)
        data = answer.body.encode()
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass                    # the notifier was killed or gave up: nothing to tell

    do_PUT = do_POST                # noqa: N815
    do_GET = do_POST                # noqa: N815 (a health endpoint, for the hosts' tests)

    def log_message(self, *args) -> None:
        pass
