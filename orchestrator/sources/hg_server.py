"""Mercurial's command server (`hg serve --cmdserver pipe`, spoken to through python-hglib),
kept per cached clone so that a snapshot's pull, log, status, manifest and cat each cost a
request instead of an interpreter start (about 0.3 s each).

A server is lent to one caller at a time and given back after each command; the clone's lock
already keeps one hg at a time in a clone. At most `limit` wait between commands in a process
(the least recently used is closed first), none longer than `idle` seconds. One found dead
is replaced; one that dies during a command is replaced and the command sent once more
(Sluice sends only reads and pulls: asking again is safe). A server reads its stdin from
this process, so it exits when this process ends, however it ends; a forked child lets go
of its parent's servers without stopping them."""
from __future__ import annotations

import atexit
import io
import os
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from hglib import error as hglib_error
from hglib.client import hgclient

from orchestrator.core.errors import TransientError

CLOSE_GRACE = 5.0        # seconds a server has to exit once its stdin is closed


@dataclass(frozen=True)
class Reply:
    status: int
    out: bytes
    err: bytes


class Client(hgclient):
    """hglib's client, started with our hg, environment and settings. Interaction is off:
    hglib turns it on for prompts we would have nobody to answer, and paths are printed
    relative to the repository's root, as a process started inside the clone prints them."""

    server: subprocess.Popen | None

    def __init__(self, repository: str, executable: str, env: dict[str, str]):
        super().__init__(repository, "utf-8", ["ui.interactive=false", "ui.relative-paths=no"],
                         connect=False)
        self._args[0] = executable
        self._env.update(env)

    def command(self, args: list[bytes]) -> Reply:
        out, err = io.BytesIO(), io.BytesIO()
        status = self.runcommand(args, {}, {b"o": out.write, b"e": err.write})
        return Reply(status, out.getvalue(), err.getvalue())

    def alive(self) -> bool:
        return self.server is not None and self.server.poll() is None

    def stop(self) -> None:
        """Close its stdin, on which it exits; killed if it has not within CLOSE_GRACE."""
        proc, self.server = self.server, None
        if proc is None:
            return
        _close_pipes(proc)
        try:
            proc.wait(timeout=CLOSE_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def let_go(self) -> None:
        """In a forked child: its pipes closed here, the server left to the parent."""
        proc, self.server = self.server, None
        if proc is not None:
            _close_pipes(proc)
            proc.returncode = 0         # not ours to wait for


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass


class CommandServers:
    """The process's command servers, by key (a clone and the settings it was started with)."""

    def __init__(self, limit: int = 8, idle: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.idle, self.clock = limit, idle, clock
        self._lock = threading.Lock()
        self._waiting: OrderedDict[Hashable, tuple[Client, float]] = OrderedDict()
        self._lent: set[Client] = set()
        self._reaper: threading.Thread | None = None

    def run(self, key: Hashable, start: Callable[[], Client], args: list[bytes], label: str) -> Reply:
        """`args` run by the server for `key` (one started by `start()` when none waits)."""
        for attempt in (1, 2):
            client = self._take(key) or self._started(start, label)
            try:
                reply = client.command(args)
            except (hglib_error.ServerError, OSError) as exc:
                self._discard(client)
                if attempt == 2:
                    raise TransientError(f"{label}: the hg command server stopped: {exc}") from None
                continue
            except BaseException:
                self._discard(client)       # half-way through a command: its state is unknown
                raise
            self._give_back(key, client)
            return reply
        raise AssertionError("unreachable")

    def reap(self) -> int:
        """Close the servers idle for longer than `idle`; returns how many still wait."""
        now = self.clock()
        with self._lock:
            stale = [key for key, (_, since) in self._waiting.items() if now - since > self.idle]
            closing = [self._waiting.pop(key)[0] for key in stale]
            left = len(self._waiting)
        for client in closing:
            client.stop()
        return left

    def close_all(self) -> None:
        with self._lock:
            closing = [client for client, _ in self._waiting.values()]
            self._waiting.clear()
        for client in closing:
            client.stop()

    def pids(self) -> list[int]:
        """The waiting servers' process ids (for tests and benchmarks)."""
        with self._lock:
            return [c.server.pid for c, _ in self._waiting.values() if c.server is not None]

    def forget_after_fork(self) -> None:
        for client in [*self._lent, *(c for c, _ in self._waiting.values())]:
            client.let_go()
        self._lock = threading.Lock()
        self._waiting.clear()
        self._lent.clear()
        self._reaper = None

    def _take(self, key: Hashable) -> Client | None:
        with self._lock:
            client, _ = self._waiting.pop(key, (None, 0.0))
            if client is not None:
                self._lent.add(client)
        if client is not None and not client.alive():
            self._discard(client)
            return None
        return client

    def _started(self, start: Callable[[], Client], label: str) -> Client:
        try:
            client = start()
        except hglib_error.ServerError as exc:
            raise TransientError(f"{label}: the hg command server did not start: {exc}") from None
        with self._lock:
            self._lent.add(client)
        return client

    def _give_back(self, key: Hashable, client: Client) -> None:
        with self._lock:
            self._lent.discard(client)
            displaced = self._waiting.pop(key, None)
            self._waiting[key] = (client, self.clock())
            closing = [displaced[0]] if displaced else []
            while len(self._waiting) > self.limit:
                closing.append(self._waiting.popitem(last=False)[1][0])
            if self._waiting and (self._reaper is None or not self._reaper.is_alive()):
                self._reaper = threading.Thread(target=self._reap_while_any, daemon=True,
                                                name="hg-command-servers")
                self._reaper.start()
        for old in closing:
            old.stop()

    def _discard(self, client: Client) -> None:
        with self._lock:
            self._lent.discard(client)
        client.stop()

    def _reap_while_any(self) -> None:
        while True:
            time.sleep(max(self.idle / 2, 0.05))
            with self._lock:
                if not self._waiting:
                    self._reaper = None
                    return
            self.reap()


servers = CommandServers()
atexit.register(servers.close_all)
os.register_at_fork(after_in_child=servers.forget_after_fork)
