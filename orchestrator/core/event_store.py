"""EventStore: one Redis Stream per app is the source of truth; `sluice:feed` mirrors all.

Appends go through one Lua script that checks the stream's version (its last entry's `n`)
against the version the writer last read, so of two writers holding the same version only
one can append.

Given an archive, an app's stream keeps a tail in Redis (core/stream_tail.py) and its older
events move to files (core/event_archive.py); reads go through the archive where the stream
no longer starts at version 1, so they still give the whole history. The feed is a window
(about FEED_MAXLEN entries, trimmed as it is written) for followers, not a second record.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from itertools import takewhile

import redis

from orchestrator.core import feed_moves, keys, replies, stream_reads, stream_tail
from orchestrator.core.errors import ConcurrencyError, StoreError
from orchestrator.core.event_archive import Entry, EventArchive, id_key
from orchestrator.core.event_log import RecordedEvent, decode_entry
from orchestrator.core.events import Event
from orchestrator.core.feed_moves import FeedMoves
from orchestrator.core.projections import AppView
from orchestrator.core.stream_reads import read_streams

FEED_MAXLEN = 10_000
BATCH = 500             # entries read at a time
TRIM_LOCK_SECONDS = 60

# The version is the last entry's `n` (field 1), not XLEN: a trimmed stream is shorter.
_APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local version = 0
if last[1] then version = tonumber(last[1][2][2]) end
local expected = tonumber(ARGV[1])
if expected >= 0 and version ~= expected then
  return redis.error_reply('SLUICE_CONFLICT ' .. version)
end
for i = 4, #ARGV, 3 do
  version = version + 1
  redis.call('XADD', KEYS[1], '*', 'n', version,
             'type', ARGV[i], 'schema', ARGV[i + 1], 'data', ARGV[i + 2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'app', ARGV[3], 'n', version,
             'type', ARGV[i], 'schema', ARGV[i + 1], 'data', ARGV[i + 2])
end
redis.call('SADD', KEYS[3], ARGV[3])
return {version, redis.call('XLEN', KEYS[1])}
"""


class EventStore:
    """The EventLog (orchestrator/core/event_log.py) on Redis Streams."""

    def __init__(self, client: redis.Redis, archive: EventArchive | None = None,
                 keep: int = stream_tail.KEEP):
        self.redis = client
        self.archive = archive      # None: streams are never trimmed
        self.keep = keep
        self._append = client.register_script(_APPEND)
        self._moves = client.register_script(feed_moves.SCRIPT)

    def append(self, app: str, events: Sequence[Event], expected_version: int) -> int:
        """Append events atomically; returns the stream's new version."""
        argv: list = [expected_version, FEED_MAXLEN, app]
        for event in events:
            f = event.to_fields()
            argv += [f["type"], f["schema"], f["data"]]
        keys_ = [keys.app_events(app), keys.FEED, keys.APPS]
        try:
            version, length = self._append(keys=keys_, args=argv)
        except redis.ResponseError as exc:
            if "SLUICE_CONFLICT" in str(exc):
                actual = str(exc).split()[-1]
                raise ConcurrencyError(
                    f"app {app!r}: expected version {expected_version}, stream is at {actual}"
                ) from None
            raise StoreError(f"append to {app!r} failed: {exc}") from exc
        if self.archive is not None and stream_tail.due(int(length), self.keep):
            self.trim(app)
        return int(version)

    def version(self, app: str) -> int:
        last = replies.entries(self.redis.xrevrange(keys.app_events(app), "+", "-", count=1))
        return int(last[0][1][b"n"]) if last else 0

    def versions(self, apps: Sequence[str]) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            for app in apps:
                pipe.xrevrange(keys.app_events(app), "+", "-", count=1)
            lasts = [replies.entries(r) for r in pipe.execute()]
        return {app: int(last[0][1][b"n"]) if last else 0 for app, last in zip(apps, lasts)}

    def read(self, app: str, after_id: str | None = None) -> list[RecordedEvent]:
        return [decode_entry(i, f) for i, f in self.entries(app, after_id)]

    def entries(self, app: str, after_id: str | None = None) -> Iterator[Entry]:
        """The app's stream entries (id and fields as str) after `after_id`, oldest first,
        read lazily: from the archive while the stream lacks them, then from Redis."""
        key, last, last_n = keys.app_events(app), after_id, 0
        while True:
            start = f"({last}" if last else "-"
            if last_n == 0:     # the stream's first entry says whether the archive has ours
                with self.redis.pipeline() as pipe:
                    pipe.xrange(key, "-", "+", count=1)
                    pipe.xrange(key, start, "+", count=BATCH)
                    head, raw = pipe.execute()
                head = _texts(head)
                missing = bool(head) and int(head[0][1]["n"]) > 1 \
                    and (last is None or id_key(last) < id_key(head[0][0]))
            else:
                raw = self.redis.xrange(key, start, "+", count=BATCH)
                missing = bool(raw) and int(replies.entries(raw)[0][1][b"n"]) > last_n + 1
            batch = _texts(raw)
            if missing and self.archive is not None:
                bound = id_key(batch[0][0]) if batch else None
                yield from takewhile(lambda e: bound is None or id_key(e[0]) < bound,
                                     self.archive.entries(app, last))
            yield from batch
            if len(batch) < BATCH:
                return
            last, last_n = batch[-1][0], int(batch[-1][1]["n"])

    def read_many(self, after: Mapping[str, str | None]) -> dict[str, list[RecordedEvent]]:
        """What `read(app, after_id)` gives for each app, in one round trip for the apps whose
        events since their id are all in Redis and a few (core/stream_reads.py); the others
        are read alone."""
        apps = list(after)
        found = {}
        for app, got in zip(apps, read_streams(self.redis, [(keys.app_events(a), after[a]) for a in apps])):
            if len(got.entries) == stream_reads.COUNT or _archived_since(got.head, after[app]):
                found[app] = self.read(app, after[app])
            else:
                found[app] = [decode_entry(i, f) for i, f in got.entries]
        return found

    def read_backwards(self, app: str) -> Iterator[RecordedEvent]:
        """The app's events newest first, read lazily (Redis, then the archive)."""
        key, end, last = keys.app_events(app), "+", None
        while True:
            batch = _texts(self.redis.xrevrange(key, end, "-", count=BATCH))
            yield from (decode_entry(i, f) for i, f in batch)
            if batch:
                last = batch[-1]
            if len(batch) < BATCH:
                break
            end = f"({batch[-1][0]}"
        if last is not None and int(last[1]["n"]) > 1 and self.archive is not None:
            yield from (decode_entry(i, f) for i, f in self.archive.entries_backwards(app, last[0]))

    def trim(self, app: str) -> int:
        """Archive the app's oldest events beyond its tail, then remove them from Redis (one
        trimmer per app at a time); returns how many left Redis."""
        if self.archive is None:
            return 0
        lock, token = keys.archiving(app), secrets.token_hex(8)
        if not self.redis.set(lock, token, nx=True, ex=TRIM_LOCK_SECONDS):
            return 0        # another process is trimming it
        try:
            key = keys.app_events(app)
            excess = int(self.redis.xlen(key)) - self.keep
            if excess <= 0:
                return 0
            oldest = _texts(self.redis.xrange(key, "-", "+", count=excess))
            cut = stream_tail.removable(oldest, self._cached_view(app))
            if not cut:
                return 0
            self.archive.write(app, stream_tail.unarchived(cut, self.archive.last_id(app)))
            ms, seq = id_key(cut[-1][0])
            return int(self.redis.xtrim(key, minid=f"{ms}-{seq + 1}", approximate=False))
        finally:
            if replies.value(self.redis.get(lock)) == token.encode():
                self.redis.delete(lock)

    def _cached_view(self, app: str) -> AppView | None:
        cached = replies.value(self.redis.get(keys.app_projection(app)))
        try:
            return AppView.from_json(cached) if cached else None
        except (ValueError, TypeError, KeyError):
            return None

    def apps(self) -> list[str]:
        return sorted(replies.text(a) for a in self.redis.smembers(keys.APPS))

    def feed_last_id(self) -> str:
        entries = replies.entries(self.redis.xrevrange(keys.FEED, "+", "-", count=1))
        return replies.text(entries[0][0]) if entries else "0-0"

    def feed_moves(self, after_id: str, limit: int = feed_moves.LIMIT) -> FeedMoves:
        return feed_moves.decoded(self._moves(keys=[keys.FEED], args=[after_id, limit]))

    def follow(self, after_id: str = "$", block_ms: int = 1000,
               app: str | None = None) -> Iterator[RecordedEvent | None]:
        """Yield events from the feed as they arrive; None after each idle wait."""
        last = after_id
        while True:
            entries = replies.read_entries(self.redis.xread({keys.FEED: last}, block=block_ms, count=500))
            if not entries:
                yield None
                continue
            for entry_id, fields in entries:
                last = replies.text(entry_id)
                if app is None or fields.get(b"app") == app.encode():
                    yield decode_entry(entry_id, fields)


def _archived_since(head: tuple[str, int] | None, after_id: str | None) -> bool:
    """Whether some of the app's events after `after_id` are no longer in Redis (as `entries`
    decides it: the stream starts after version 1, and after that id)."""
    return head is not None and head[1] > 1 and (after_id is None or id_key(after_id) < id_key(head[0]))


def _texts(reply: object) -> list[Entry]:
    return [(replies.text(i), replies.text_fields(f)) for i, f in replies.entries(reply)]
