"""What every event store offers: the Redis one (event_store) and the in-memory one
(memory_store) keep the same contract, checked by one suite (tests/contracts).

- `append(app, events, expected_version)`: all or nothing; the app's stream must be at
  `expected_version` (ANY_VERSION: anywhere), else ConcurrencyError and nothing is written.
  Returns the stream's new version: versions are 1-based positions in the app's stream.
- `read(app, after_id)`: the app's events in order, after the entry `after_id` if given:
  the whole history, those archived (core/event_archive.py) when the store keeps only a
  tail (core/stream_tail.py) included; `read_backwards(app)`: the same newest first, lazily;
  `read_many({app: after_id})`: `read` of many apps at once (fleet views: one round trip).
- `version(app)`: the app's last event's version (not the number of events the store holds);
  `versions(apps)`: each one's, in one round trip.
- the feed mirrors every app's events in append order: `feed_last_id`, `follow`;
  `feed_moves(after_id)`: the apps appended to since (fleet views re-read only those).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.core import replies
from orchestrator.core.events import Event
from orchestrator.core.feed_moves import FeedMoves

ANY_VERSION = -1


@dataclass(frozen=True)
class RecordedEvent:
    version: int       # 1-based position in the app's stream
    id: str            # the store's entry id (a Redis stream entry id), ordered as appended
    event: Event


def decode_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> RecordedEvent:
    """One stored entry (id and fields as bytes, as Redis gives them, or str) as a RecordedEvent."""
    text = replies.text_fields(fields)
    return RecordedEvent(int(text["n"]), replies.text(entry_id), Event.from_fields(text))


class EventLog(Protocol):
    def append(self, app: str, events: Sequence[Event], expected_version: int) -> int: ...

    def version(self, app: str) -> int: ...

    def versions(self, apps: Sequence[str]) -> dict[str, int]:
        """`version` of each app, in one round trip."""
        ...

    def read(self, app: str, after_id: str | None = None) -> list[RecordedEvent]: ...

    def read_many(self, after: Mapping[str, str | None]) -> dict[str, list[RecordedEvent]]:
        """`read(app, after_id)` of each app in `after`, in as few round trips as the store can."""
        ...

    def read_backwards(self, app: str) -> Iterator[RecordedEvent]: ...

    def apps(self) -> list[str]: ...

    def feed_last_id(self) -> str: ...

    def feed_moves(self, after_id: str, limit: int = ...) -> FeedMoves:
        """The feed's last id now, and the apps appended to after `after_id` (one round
        trip); None for the apps when the feed can no longer tell (core/feed_moves.py)."""
        ...

    def follow(self, after_id: str = "$", block_ms: int = 1000,
               app: str | None = None) -> Iterator[RecordedEvent | None]:
        """Events of every app (or of `app`) after `after_id` ("$": from now) as they are
        appended; None after each `block_ms` without one."""
        ...
