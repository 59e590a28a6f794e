"""A Redis connection that speaks only what a short-lived reader needs — one pipeline of
commands, replies parsed by hiredis — for `sluice apps`, whose whole run must cost less than
importing redis-py (which imports asyncio, its cluster client and OpenTelemetry's hooks: five
times the interpreter's start). Everything long-lived uses redis-py.

It speaks redis:// and unix:// URLs as redis-py reads them (user and password, the database
in the path or `?db=`); `connect` answers None for any other (rediss://: TLS), and the
caller goes the long way."""
from __future__ import annotations

import socket
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Command = tuple[str | bytes, ...]


class LightRedis:
    def __init__(self, sock: socket.socket):
        self._sock, self._reader = sock, hiredis.Reader()

    @classmethod
    def connect(cls, url: str, timeout: float = 5.0) -> LightRedis | None:
        """Raises OSError when Redis cannot be reached, RedisReplyError when it refuses the
        login."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "unix"):
            return None
        query = parse_qs(parts.query)
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = parts.path
            db = query.get("db", ["0"])[0]
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET)
            address = (parts.hostname or "localhost", parts.port or 6379)
            db = parts.path.strip("/") or query.get("db", ["0"])[0]
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        client = cls(sock)
        client.pipeline(_login(parts.username, parts.password or query.get("password", [None])[0], db))
        return client

    def pipeline(self, commands: list[Command]) -> list:
        """Each command's reply, in order, after one write and as many reads as they take."""
        if not commands:
            return []
        self._sock.sendall(b"".join(_encoded(c) for c in commands))
        replies = [self._reply() for _ in commands]
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise RedisReplyError(str(reply))
        return replies

    def _reply(self):
        while (reply := self._reader.gets()) is False:
            data = self._sock.recv(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._reader.feed(data)
        return reply

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LightRedis:
        return self

    def __exit__(self, *_) -> None:
        self.close()


class RedisReplyError(Exception):
    """Redis answered a command with an error (a wrong password, an unknown command)."""


def _login(user: str | None, password: str | None, db: str) -> list[Command]:
    auth: list[Command] = []
    if password is not None:
        auth.append(("AUTH", unquote(user), unquote(password)) if user else ("AUTH", unquote(password)))
    return auth + ([("SELECT", db)] if db not in ("", "0") else [])


def _encoded(command: Command) -> bytes:
    words = [w if isinstance(w, bytes) else w.encode() for w in command]
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
