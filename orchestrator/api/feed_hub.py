"""One reader of `sluice:feed` per API process for all its event streams (GET /api/events).

A stream of its own per client held a blocked XREAD, so a Redis connection, per open
stream: a thousand dashboards, a thousand connections (Redis's maxclients is 10,000 in all,
workers and pollers included). Here one task reads the feed (XREAD BLOCK, one connection)
and hands each entry to every follower's queue; what a follower needs from before it
joined (since=, Last-Event-ID) it reads once, without blocking, through a small shared pool.
So a process holds at most 1 + POOL_SIZE connections for any number of streams.

A follower joins at the reader's position L and gets in its queue every entry after L; it
first reads the entries between its start and L itself, and drops any entry whose id is not
after the last one it yielded, so each entry reaches it once and in order wherever it started.
The reader runs while someone follows. A follower whose queue fills up (a client reading too
slowly) is let go: its client reconnects with Last-Event-ID and reads what it missed.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis

from orchestrator.core import keys, replies

log = logging.getLogger("sluice.api")

BATCH = 500
POOL_SIZE = 4               # connections for catching up and resolving "now", shared
QUEUE_SIZE = 10_000         # entries a follower may lag behind before it is let go
BLOCK_MS = 5_000            # how long one XREAD waits; the socket waits longer
READER_NAME, POOL_NAME = "sluice-feed-reader", "sluice-feed"      # as CLIENT LIST shows them
Entry = tuple[str, dict[str, str]]      # (feed id, fields as text)


class FollowEnded(Exception):
    """The stream cannot go on (Redis went away, or the client fell too far behind)."""


def stream_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Follower:
    wanted: Callable[[dict[str, str]], bool]
    queue: asyncio.Queue[Entry] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    ended: str | None = None            # why the reader let it go

    def offer(self, entry: Entry) -> None:
        if self.ended is None and self.wanted(entry[1]):
            try:
                self.queue.put_nowait(entry)
            except asyncio.QueueFull:
                self.end("the client fell too far behind")

    def end(self, why: str) -> None:
        self.ended = why
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(("", {}))         # wakes it up to see why


class FeedHub:
    """Follow the feed from any id, many followers sharing one reader."""

    def __init__(self, redis_url: str, socket_timeout: float = 30.0) -> None:
        self.redis_url, self.socket_timeout = redis_url, socket_timeout
        self.followers: set[Follower] = set()
        self.position = "0-0"           # the reader's last id: what followers get from their queues
        self._reader: asyncio.Task | None = None
        self._shared: aioredis.Redis | None = None
        self._starting = asyncio.Lock()

    def shared(self) -> aioredis.Redis:
        """The small pool for short commands (XREVRANGE, catching up)."""
        if self._shared is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.redis_url, max_connections=POOL_SIZE, socket_timeout=self.socket_timeout,
                client_name=POOL_NAME)
            self._shared = aioredis.Redis(connection_pool=pool)
        return self._shared

    async def newest(self) -> str:
        newest = replies.entries(await self.shared().xrevrange(keys.FEED, "+", "-", count=1))
        return newest[0][0].decode() if newest else "0-0"

    async def follow(self, start: str, wanted: Callable[[dict[str, str]], bool],
                     wait: float) -> AsyncIterator[list[Entry]]:
        """Batches of the wanted entries after `start`, in order; [] when `wait` seconds
        passed with none. Raises FollowEnded when it cannot go on."""
        follower = Follower(wanted)
        joined_at = await self._join(follower)
        try:
            last = start
            while stream_key(last) < stream_key(joined_at):      # what came before joining
                entries = await self._history(last)
                if not entries:
                    break
                last = entries[-1][0]
                if batch := [e for e in entries if wanted(e[1])]:
                    yield batch
            while True:
                batch = [e for e in await self._next(follower, wait) if stream_key(e[0]) > stream_key(last)]
                if batch:
                    last = batch[-1][0]
                yield batch
        finally:
            self._leave(follower)

    async def _next(self, follower: Follower, wait: float) -> list[Entry]:
        try:
            first = await asyncio.wait_for(follower.queue.get(), wait)
        except TimeoutError:
            return []
        batch = [first]
        while not follower.queue.empty() and len(batch) < BATCH:
            batch.append(follower.queue.get_nowait())
        if follower.ended is not None:
            raise FollowEnded(follower.ended)
        return batch

    async def _history(self, after: str) -> list[Entry]:
        try:
            reply = await self.shared().xread({keys.FEED: after}, count=BATCH)
        except redis.RedisError as exc:
            raise FollowEnded(str(exc)) from exc
        return [(entry_id.decode(), replies.text_fields(raw)) for entry_id, raw in replies.read_entries(reply)]

    async def _join(self, follower: Follower) -> str:
        """Adds the follower; returns the reader's position then, after which its queue gets
        every entry."""
        async with self._starting:
            if self._reader is None:
                try:
                    self.position = await self.newest()
                except redis.RedisError as exc:
                    raise FollowEnded(str(exc)) from exc
            self.followers.add(follower)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(self._read())
            return self.position

    def _leave(self, follower: Follower) -> None:
        self.followers.discard(follower)
        if not self.followers and self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read(self) -> None:
        client = aioredis.Redis.from_url(self.redis_url, socket_timeout=self.socket_timeout,
                                         client_name=READER_NAME)
        try:
            while self.followers:
                reply = await client.xread({keys.FEED: self.position}, block=BLOCK_MS, count=BATCH)
                for entry_id, raw in replies.read_entries(reply):
                    self.position = entry_id.decode()
                    entry = (self.position, replies.text_fields(raw))
                    for follower in self.followers:
                        follower.offer(entry)
        except redis.RedisError as exc:
            log.warning("event streams ended: %s", exc)
            for follower in self.followers:
                follower.end(str(exc))
        finally:
            await client.aclose()
