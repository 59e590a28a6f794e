"""EventStore: one Redis Stream per app is the source of truth; `sluice:feed` mirrors all.

Appends go through one Lua script that checks the stream's length against the version
the writer last read, so of two writers holding the same version only one can append.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import redis

from orchestrator.core import keys, replies
from orchestrator.core.errors import ConcurrencyError, StoreError
from orchestrator.core.event_log import RecordedEvent, decode_entry
from orchestrator.core.events import Event

FEED_MAXLEN = 100_000

_APPEND = """
local version = redis.call('XLEN', KEYS[1])
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
return version
"""


class EventStore:
    """The EventLog (orchestrator/core/event_log.py) on Redis Streams."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._append = client.register_script(_APPEND)

    def append(self, app: str, events: Sequence[Event], expected_version: int) -> int:
        """Append events atomically; returns the stream's new version."""
        argv: list = [expected_version, FEED_MAXLEN, app]
        for event in events:
            f = event.to_fields()
            argv += [f["type"], f["schema"], f["data"]]
        keys_ = [keys.app_events(app), keys.FEED, keys.APPS]
        try:
            return int(self._append(keys=keys_, args=argv))
        except redis.ResponseError as exc:
            if "SLUICE_CONFLICT" in str(exc):
                actual = str(exc).split()[-1]
                raise ConcurrencyError(
                    f"app {app!r}: expected version {expected_version}, stream is at {actual}"
                ) from None
            raise StoreError(f"append to {app!r} failed: {exc}") from exc

    def version(self, app: str) -> int:
        return int(self.redis.xlen(keys.app_events(app)))

    def read(self, app: str, after_id: str | None = None) -> list[RecordedEvent]:
        start = f"({after_id}" if after_id else "-"
        entries = replies.entries(self.redis.xrange(keys.app_events(app), start, "+"))
        return [decode_entry(i, f) for i, f in entries]

    def apps(self) -> list[str]:
        return sorted(replies.text(a) for a in self.redis.smembers(keys.APPS))

    def feed_last_id(self) -> str:
        entries = replies.entries(self.redis.xrevrange(keys.FEED, "+", "-", count=1))
        return replies.text(entries[0][0]) if entries else "0-0"

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
