"""A real HTTP server on a free loopback port whose answers a test scripts, for clients that
must be tested against real sockets (the health probe): each GET takes the next of a list
of (status, body) answers, the last one repeating, or what a function of the request's
number gives."""
from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Answer = tuple[int, str]


class ScriptedHttp:
    def __init__(self, url: str):
        self.url = url
        self.answers: list[Answer] | Callable[[int], Answer] = [(200, "ok")]
        self.delay = 0.0                         # seconds before each answer
        self.seen: list[dict[str, str]] = []     # each request's path and headers

    def answer(self, headers: dict[str, str]) -> Answer:
        number = len(self.seen)
        self.seen.append(headers)
        if callable(self.answers):
            return self.answers(number)
        return self.answers[min(number, len(self.answers) - 1)]


@contextmanager
def scripted_http() -> Iterator[ScriptedHttp]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.script = ScriptedHttp(f"http://127.0.0.1:{server.server_address[1]}")  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.script  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:       # noqa: N802 (http.server's name)
        script: ScriptedHttp = self.server.script  # type: ignore[attr-defined]
        status, body = script.answer({"path": self.path, **dict(self.headers)})
        time.sleep(script.delay)
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass                    # the client gave up (a probe's timeout): nothing to tell

    def log_message(self, *args) -> None:
        pass
