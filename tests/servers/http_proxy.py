"""A forward HTTP proxy for tests on a loopback port: CONNECT tunnels (for https) and
requests by their whole URL (for http), each recorded, optionally behind Basic proxy auth."""
from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
from urllib.parse import urlsplit


class HttpProxy:
    """`seen`: (method, target) of every CONNECT or request the proxy took, in order."""

    def __init__(self, auth: tuple[str, str] | None = None):
        self.seen: list[tuple[str, str]] = []
        self.expected = "Basic " + base64.b64encode(":".join(auth).encode()).decode() if auth else None
        proxy = self

        class Handler(_Relay):
            owner = proxy

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HttpProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Relay(socketserver.StreamRequestHandler):
    owner: HttpProxy

    def handle(self) -> None:
        while request := self._read_head():
            method, target, _ = request[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in request[1:])
            self.owner.seen.append((method, target))
            if self.owner.expected and headers.get("Proxy-Authorization") != self.owner.expected:
                self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
                continue
            if method == "CONNECT":
                return self._tunnel(target)
            self._forward(method, target, request[1:])

    def _read_head(self) -> list[str]:
        lines = []
        while (line := self.rfile.readline().decode("latin-1").rstrip("\r\n")):
            lines.append(line)
        return lines

    def _tunnel(self, authority: str) -> None:
        host, _, port = authority.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port))) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            ends = [self.connection, upstream]
            while True:
                for end in select.select(ends, [], [], 30)[0] or [None]:
                    data = end.recv(65536) if end else b""
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)

    def _forward(self, method: str, target: str, lines: list[str]) -> None:
        """One request upstream on a connection of its own, closed after the answer; the
        answer goes back whole, keeping the client's connection."""
        url = urlsplit(target)
        kept = [h for h in lines if not h.lower().startswith(("proxy-authorization:", "connection:"))]
        length = next((int(h.split(":")[1]) for h in kept if h.lower().startswith("content-length:")), 0)
        body = self.rfile.read(length)
        path = url.path + (f"?{url.query}" if url.query else "")
        head = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"])
        answer = b""
        with socket.create_connection((url.hostname, url.port or 80)) as upstream:
            upstream.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
            while data := upstream.recv(65536):
                answer += data
        self.wfile.write(answer)
