"""The EventLog in one process's memory, and a view cache to go with it: decisions and
projections run on them in tests without a redis-server.

It keeps the Redis store's contract (tests/contracts): events go through the same wire form
(so schemas are checked and upcast on read the same way), appends are all or nothing under
the expected version, entry ids ("{n}-0") are ordered as appended, and the feed mirrors
every app. It does not cap the feed.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from orchestrator.core.errors import ConcurrencyError
from orchestrator.core.event_log import RecordedEvent, decode_entry
from orchestrator.core.events import Event

Entry = tuple[str, str, dict[str, str]]      # (entry id, app, fields)


class MemoryEventStore:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._streams: dict[str, list[Entry]] = {}
        self._feed: list[Entry] = []        # entry n of the feed has the id "{n + 1}-0"

    def append(self, app: str, events: Sequence[Event], expected_version: int) -> int:
        """Append events atomically; returns the stream's new version."""
        wire = [event.to_fields() for event in events]
        with self._changed:
            stream = self._streams.setdefault(app, [])
            if expected_version >= 0 and len(stream) != expected_version:
                raise ConcurrencyError(
                    f"app {app!r}: expected version {expected_version}, stream is at {len(stream)}")
            for fields in wire:
                entry = (f"{len(self._feed) + 1}-0", app, {"n": str(len(stream) + 1), **fields})
                stream.append(entry)
                self._feed.append(entry)
            self._changed.notify_all()
            return len(stream)

    def version(self, app: str) -> int:
        with self._changed:
            return len(self._streams.get(app, []))

    def read(self, app: str, after_id: str | None = None) -> list[RecordedEvent]:
        after = _position(after_id) if after_id else 0
        with self._changed:
            entries = [e for e in self._streams.get(app, []) if _position(e[0]) > after]
        return [decode_entry(e[0], e[2]) for e in entries]

    def apps(self) -> list[str]:
        with self._changed:
            return sorted(self._streams)

    def feed_last_id(self) -> str:
        with self._changed:
            return self._feed[-1][0] if self._feed else "0-0"

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
    """A dict with the three calls Projections makes of its cache."""

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}

    def get(self, name: str, /) -> bytes | None:
        return self._values.get(name)

    def set(self, name: str, value: bytes, /) -> None:
        self._values[name] = value

    def delete(self, name: str, /) -> None:
        self._values.pop(name, None)


def _position(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])
