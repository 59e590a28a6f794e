"""A minimal HTTP/1.1 client for head checks: pooled keep-alive connections, nothing else.

A head check is one small request whose answer is one short body, repeated for thousands of
sources. httpx spends ~0.5 ms of CPU on such a request and the standard library's
http.client ~0.18 ms (its header parsing goes through the email package); both are most of
the cost of a check. This client reads the status line and headers itself and keeps one idle
connection per concurrent caller, which brings a check to a few hundredths of a millisecond.
It does what head checks need: GET/POST, Basic auth, Content-Length or chunked bodies,
redirects, TLS verified against the system trust store (or SSL_CERT_FILE), a timeout, and
the environment's http:// proxy where one applies (proxies.py): https through a CONNECT
tunnel, http by the whole URL. No compression, no cookies.
"""
from __future__ import annotations

import os
import re
import socket
import ssl
import struct
import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

from orchestrator.core import basic_auth
from orchestrator.sources.proxies import Proxy, proxy_for

QUICKACK = getattr(socket, "TCP_QUICKACK", None)     # Linux only; elsewhere the delayed ACK stays
MAX_REDIRECTS = 5
MAX_BODY = 64 * 1024 * 1024
FRAMING = re.compile(rb"(?m)^(content-length|transfer-encoding|connection)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$")


class HttpError(OSError):
    """The connection failed or the server broke the protocol."""


class Response:
    __slots__ = ("status", "body", "_head", "_headers")

    def __init__(self, status: int, head: bytes, body: bytes):
        self.status, self.body, self._head = status, body, head
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Names in lower case; parsed on first use, since a head check reads none of them."""
        if self._headers is None:
            self._headers = _parse_headers(self._head)
        return self._headers


def _parse_headers(head: bytes) -> dict[str, str]:
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    target: str                      # path and query, as sent in the request line


@lru_cache(maxsize=65536)
def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Origin(parts.scheme, parts.hostname, port, target)


def _proxy(url: str) -> Proxy | None:
    origin = _origin(url)
    return proxy_for(origin.scheme, origin.host, origin.port)


@lru_cache(maxsize=16384)
def _request_head(method: str, url: str, auth: tuple[str, str] | None,
                  headers: tuple[tuple[str, str], ...], body_length: int,
                  proxy: Proxy | None = None) -> tuple[_Origin, bytes]:
    """The request line and headers; cached, since a poller sends the same ones over and over."""
    origin = _origin(url)
    target = origin.target
    if proxy is not None and origin.scheme == "http":      # not tunnelled: the proxy reads the URL
        target = f"http://{_authority(origin)}{origin.target}"
        if proxy.authorization:
            headers += (("Proxy-Authorization", proxy.authorization),)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host}:{origin.port}"]
    if auth is not None:
        headers += (("Authorization", basic_auth.header(*auth)),)
    lines += [f"{k}: {v}" for k, v in dict(headers).items()]
    if body_length or method == "POST":
        lines.append(f"Content-Length: {body_length}")
    return origin, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _same_origin(url: str, target: str) -> bool:
    """Whether a redirect stays on the origin; never a step down from https to http, which
    would send the request and its credentials in the clear."""
    here, there = _origin(url), _origin(target)
    if here.scheme == "https" and there.scheme != "https":
        raise HttpError(f"refused a redirect from https to {there.scheme}://{there.host}:{there.port}")
    return (here.scheme, here.host, here.port) == (there.scheme, there.host, there.port)


def _authority(origin: _Origin) -> str:
    return f"[{origin.host}]:{origin.port}" if ":" in origin.host else f"{origin.host}:{origin.port}"


def _tunnel(sock: socket.socket, origin: _Origin, proxy: Proxy) -> None:
    """CONNECT: the proxy relays bytes both ways and TLS runs end to end through it, so the
    proxy sees neither the request nor its credentials."""
    lines = [f"CONNECT {_authority(origin)} HTTP/1.1", f"Host: {_authority(origin)}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    answer = b""
    while b"\r\n\r\n" not in answer:
        if len(answer) > 65536 or not (data := sock.recv(65536)):
            raise HttpError(f"the proxy {proxy.describe()} gave no answer to CONNECT")
        answer += data
    if answer[9:10] != b"2":
        status = answer.partition(b"\r\n")[0].decode("latin-1")
        raise HttpError(f"the proxy {proxy.describe()} refused a tunnel to {_authority(origin)}: {status}")


class _Connection:
    def __init__(self, origin: _Origin, timeout: float, context: ssl.SSLContext | None,
                 proxy: Proxy | None = None):
        if proxy is not None and proxy.scheme != "http":
            raise HttpError(f"the proxy {proxy.describe()}: head checks speak to http:// proxies only")
        address = (proxy.host, proxy.port) if proxy else (origin.host, origin.port)
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if origin.scheme == "https":    # the pool passes its context (made on first use)
                if proxy is not None:
                    _tunnel(sock, origin, proxy)
                sock = (context or ssl.create_default_context()).wrap_socket(sock, server_hostname=origin.host)
        except BaseException:
            sock.close()                    # a refused tunnel or handshake leaves no socket open
            raise
        # The kernel enforces the timeout (SO_RCVTIMEO/SO_SNDTIMEO) so that a blocking socket
        # needs no poll() before every recv.
        sock.settimeout(None)
        timeval = struct.pack("ll", int(timeout), int(timeout % 1 * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.sock, self.buffer, self.used = sock, b"", False

    def close(self) -> None:
        self.sock.close()

    def exchange(self, head: bytes, body: bytes, method: str) -> tuple[Response, bool]:
        """Send one request, read its response; (response, whether the connection may be reused)."""
        self.sock.sendall(head + body)
        head = self._head()
        status, framing = int(head[9:12]), dict(FRAMING.findall(head.lower()))
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data, delimited = b"", True
        elif b"chunked" in framing.get(b"transfer-encoding", b""):
            data, delimited = self._chunked(), True
        elif (length := framing.get(b"content-length")) is not None:
            data, delimited = self._exactly(int(length)), True
        else:
            data, delimited = self._until_closed(), False
        reusable = delimited and head.startswith(b"HTTP/1.1") \
            and framing.get(b"connection") != b"close"
        return Response(status, head, data), reusable

    def _head(self) -> bytes:
        """Reads are whole recv()s into one buffer, and only the framing headers are parsed
        here, by one regular expression: after every wake-up the interpreter runs on cold
        caches, so each line of Python in this path costs several times its usual price."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > 65536:
                raise HttpError("response headers over 64 KiB")
            self._receive()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
        return head

    def _receive(self) -> None:
        # Acknowledge at once: a server that writes headers and body separately with Nagle on
        # (Python's http.server, so `hg serve`) otherwise waits for our delayed ACK, 40 ms.
        if QUICKACK is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self.buffer += data

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._receive()
        line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
        return line

    def _chunked(self) -> bytes:
        parts = []
        while size := int(self._line().split(b";")[0], 16):
            parts.append(self._exactly(size + 2)[:-2])
        while self._line():                          # trailers, up to the empty line
            continue
        return b"".join(parts)

    def _exactly(self, n: int) -> bytes:
        if n > MAX_BODY:
            raise HttpError(f"response body of {n} bytes is over the limit")
        while len(self.buffer) < n:
            self._receive()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _until_closed(self) -> bytes:
        while data := self.sock.recv(16384):
            self.buffer += data
            if len(self.buffer) > MAX_BODY:
                raise HttpError("response body over the limit")
        data, self.buffer = self.buffer, b""
        return data


class Pool:
    """Idle connections per origin, shared by threads; forgotten in a forked child."""

    def __init__(self, timeout: float = 15.0, headers: dict[str, str] | None = None,
                 context: ssl.SSLContext | None = None):
        self.timeout, self.extra = timeout, tuple({"User-Agent": "sluice", **(headers or {})}.items())
        self.context = context
        self._forget_connections()
        _pools.add(self)

    def _forget_connections(self) -> None:
        """A forked child (a Celery worker) must not share its parent's sockets."""
        self._idle: dict[tuple, list[_Connection]] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                body: bytes = b"", auth: tuple[str, str] | None = None) -> Response:
        given = tuple(headers.items()) if headers else ()
        for _ in range(MAX_REDIRECTS + 1):
            proxy = _proxy(url)
            origin, head = _request_head(method, url, auth, self.extra + given, len(body), proxy)
            response = self._send(origin, proxy, head, body, method)
            if response.status not in (301, 302, 303, 307, 308) \
                    or not (location := response.headers.get("location")):
                return response
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", b""
            target = urljoin(url, location)
            if not _same_origin(url, target):           # as git and httpx do: credentials stay
                auth = None                             # with the origin they were given for
                given = tuple((k, v) for k, v in given if k.lower() != "authorization")
            url = target
        raise HttpError(f"more than {MAX_REDIRECTS} redirects")

    def _send(self, origin: _Origin, proxy: Proxy | None, head: bytes, body: bytes,
              method: str) -> Response:
        for attempt in (1, 2):
            connection = self._take(origin, proxy)
            reused = connection.used
            try:
                response, reusable = connection.exchange(head, body, method)
            except (OSError, ValueError, IndexError) as exc:
                connection.close()
                if reused and attempt == 1 and isinstance(exc, (ConnectionError, BrokenPipeError)):
                    continue       # a kept-alive connection the server had closed: once more, fresh
                raise HttpError(f"{origin.host}:{origin.port}: {type(exc).__name__}: {exc}") from None
            connection.used = True
            self._give_back(origin, proxy, connection) if reusable else connection.close()
            return response
        raise AssertionError("unreachable")

    def _take(self, origin: _Origin, proxy: Proxy | None) -> _Connection:
        key = (origin.scheme, origin.host, origin.port, proxy)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        if origin.scheme == "https" and self.context is None:
            self.context = ssl.create_default_context()
        try:
            return _Connection(origin, self.timeout, self.context, proxy)
        except (OSError, ssl.SSLError) as exc:
            raise HttpError(f"{origin.host}:{origin.port}: {type(exc).__name__}: {exc}") from None

    def _give_back(self, origin: _Origin, proxy: Proxy | None, connection: _Connection) -> None:
        with self._lock:
            self._idle.setdefault((origin.scheme, origin.host, origin.port, proxy), []).append(connection)


_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _forget_all_connections() -> None:
    for pool in _pools:
        pool._forget_connections()


os.register_at_fork(after_in_child=_forget_all_connections)
