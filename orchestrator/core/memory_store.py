"""The EventLog in one process's memory, and a view cache to go with it: decisions and
projections run on them in tests without a redis-server.

It keeps the Redis store's contract (tests/contracts): events go through the same wire form
(so schemas are checked and upcast on read the same way), appends are all or nothing under
the expected version, entry ids ("{n}-0") are ordered as appended, and the feed mirrors
every app. It does not cap the feed. Given an archive and the view cache, it keeps a tail
of each app's stream and archives the rest by the same rules (core/stream_tail.py).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence

from orchestrator.core import feed_moves, keys, stream_tail
from orchestrator.core.errors import ConcurrencyError
from orchestrator.core.event_archive import EventArchive, id_key
from orchestrator.core.event_log import RecordedEvent, decode_entry
from orchestrator.core.events import Event
from orchestrator.core.feed_moves import FeedMoves
from orchestrator.core.projections import AppView

Entry = tuple[str, str, dict[str, str]]      # (entry id, app, fields)


class MemoryEventStore:
    def __init__(self, archive: EventArchive | None = None, cache: MemoryViewCache | None = None,
                 keep: int = stream_tail.KEEP) -> None:
        self._changed = threading.Condition()
        self._streams: dict[str, list[Entry]] = {}
        self._feed: list[Entry] = []        # entry n of the feed has the id "{n + 1}-0"
        self.archive, self.cache, self.keep = archive, cache, keep

    def append(self, app: str, events: Sequence[Event], expected_version: int) -> int:
        """Append events atomically; returns the stream's new version."""
        wire = [event.to_fields() for event in events]
        with self._changed:
            stream = self._streams.setdefault(app, [])
            if expected_version >= 0 and _version(stream) != expected_version:
                raise ConcurrencyError(
                    f"app {app!r}: expected version {expected_version}, stream is at {_version(stream)}")
            for fields in wire:
                entry = (f"{len(self._feed) + 1}-0", app, {"n": str(_version(stream) + 1), **fields})
                stream.append(entry)
                self._feed.append(entry)
            self._changed.notify_all()
            version = _version(stream)
        if self.archive is not None and stream_tail.due(len(stream), self.keep):
            self.trim(app)
        return version

    def version(self, app: str) -> int:
        with self._changed:
            return _version(self._streams.get(app, []))

    def versions(self, apps: Sequence[str]) -> dict[str, int]:
        return {app: self.version(app) for app in apps}

    def read(self, app: str, after_id: str | None = None) -> list[RecordedEvent]:
        after = _position(after_id) if after_id else 0
        with self._changed:
            entries = [e for e in self._streams.get(app, []) if _position(e[0]) > after]
            head = self._streams.get(app, [])[:1]
            archived = []
            if head and int(head[0][2]["n"]) > 1 and after < _position(head[0][0]) and self.archive:
                archived = [e for e in self.archive.entries(app, after_id)
                            if id_key(e[0]) < id_key(head[0][0])]
        return [decode_entry(i, f) for i, f in archived] + [decode_entry(e[0], e[2]) for e in entries]

    def read_many(self, after: Mapping[str, str | None]) -> dict[str, list[RecordedEvent]]:
        return {app: self.read(app, after_id) for app, after_id in after.items()}

    def read_backwards(self, app: str) -> Iterator[RecordedEvent]:
        yield from reversed(self.read(app))

    def trim(self, app: str) -> int:
        """Archive the app's oldest events beyond its tail and drop them from memory."""
        if self.archive is None:
            return 0
        with self._changed:
            stream = self._streams.get(app, [])
            oldest = [(e[0], e[2]) for e in stream[:max(len(stream) - self.keep, 0)]]
            cut = stream_tail.removable(oldest, self._cached_view(app))
            self.archive.write(app, stream_tail.unarchived(cut, self.archive.last_id(app)))
            del stream[:len(cut)]
            return len(cut)

    def _cached_view(self, app: str) -> AppView | None:
        cached = self.cache.get(keys.app_projection(app)) if self.cache is not None else None
        return AppView.from_json(cached) if cached else None

    def apps(self) -> list[str]:
        with self._changed:
            return sorted(self._streams)

    def feed_last_id(self) -> str:
        with self._changed:
            return self._feed[-1][0] if self._feed else "0-0"

    def feed_moves(self, after_id: str, limit: int = feed_moves.LIMIT) -> FeedMoves:
        with self._changed:
            last, since = self.feed_last_id(), self._feed[_position(after_id):]
            if len(since) > limit or (since and since[-1][0] != last) or (not since and after_id != last):
                return FeedMoves(last, None)
            return FeedMoves(last, frozenset(app for _, app, _ in since))

    def follow(self, after_id: str = "$", block_ms: int = 1000,
               app: str | None = None) -> Iterator[RecordedEvent | None]:
        """Yield events from the feed as they arrive; None after each idle wait."""
        seen = _position(self.feed_last_id() if after_id == "$" else after_id)
        while True:
            with self._changed:
                if len(self._feed) <= seen:
                    self._changed.wait(block_ms / 1000)
                new = self._feed[seen:]
            if not new:
                yield None
                continue
            seen += len(new)
            yield from (decode_entry(e[0], e[2]) for e in new if app is None or e[1] == app)


class MemoryViewCache:
    """A dict with the calls Projections makes of its cache."""

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}

    def get(self, name: str, /) -> bytes | None:
        return self._values.get(name)

    def set(self, name: str, value: bytes, /) -> None:
        self._values[name] = value

    def delete(self, name: str, /) -> None:
        self._values.pop(name, None)

    def mget(self, names: list[str], /) -> list[bytes | None]:
        return [self._values.get(name) for name in names]

    def mset(self, values: Mapping[str, bytes], /) -> None:
        self._values.update(values)


def _position(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _version(stream: list[Entry]) -> int:
    return int(stream[-1][2]["n"]) if stream else 0
