"""The event feed as an outbox: one Redis consumer group (`notifier`) on `sluice:feed`.

Every notifier process is a consumer of the group: XREADGROUP hands each feed entry to one of
them, and the entry stays pending (in the group's PEL) until that notifier acknowledges it,
once every channel had it or gave up. A notifier starting again first takes back what it held
when it died (its own pending entries); entries another notifier holds past `claim_after`
(it died, or hangs) are claimed (XAUTOCLAIM). The group is created at the feed's end the
first time: a new notifier does not announce history. The feed keeps a bounded window
(~10,000 entries): a notifier stopped for longer than that window loses what fell out of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from orchestrator.core import keys, replies
from orchestrator.core.events import Event
from orchestrator.observe import notify_view

GROUP = keys.NOTIFIER_GROUP


@dataclass(frozen=True)
class FeedEntry:
    id: str
    app: str
    event: Event
    version: int = 0        # the event's place in the app's stream (its `n`)


class Outbox:
    def __init__(self, client: redis.Redis, consumer: str):
        self.redis, self.consumer = client, consumer
        # at start, what this consumer held before it died: read from here on (None: done)
        self._backlog_from: str | None = "0"

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(keys.FEED, GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def take(self, count: int, block_ms: int) -> list[FeedEntry]:
        """The next entries for this consumer: its own unacknowledged ones first (after a
        restart), then new ones (blocking up to `block_ms`)."""
        return self._backlog(count) or self._read(">", count, block_ms)

    def claim(self, idle_ms: int, count: int) -> list[FeedEntry]:
        """Entries another consumer has held for `idle_ms` or more, now this one's."""
        reply = self.redis.xautoclaim(keys.FEED, GROUP, self.consumer, idle_ms, "0-0", count=count)
        return self._kept(reply[1])

    def keep(self, entry_ids: list[str]) -> None:
        """Say these entries are still being handled (their idle time starts again), so no
        notifier claims a delivery that only takes long: slow receivers, tries, backoff."""
        ids: list[Any] = list(entry_ids)
        if ids:
            self.redis.xclaim(keys.FEED, GROUP, self.consumer, 0, ids, justid=True)

    def ack(self, entry_id: str) -> None:
        self.redis.xack(keys.FEED, GROUP, entry_id)

    def pending(self) -> int:
        """Entries handed out and not yet acknowledged, in all."""
        return notify_view.pending(self.redis)

    def _backlog(self, count: int) -> list[FeedEntry]:
        """This consumer's pending entries, each read once: on from the last one read (they
        stay pending until handled, and reading from "0" again would hand them out twice)."""
        while self._backlog_from is not None:
            reply: Any = self.redis.xreadgroup(GROUP, self.consumer, {keys.FEED: self._backlog_from},
                                               count=count)
            entries = reply[0][1] if reply else []
            if not entries:
                self._backlog_from = None
                break
            self._backlog_from = replies.text(entries[-1][0])
            if got := self._kept(entries):
                return got
        return []

    def _read(self, start: str, count: int, block_ms: int | None) -> list[FeedEntry]:
        reply: Any = self.redis.xreadgroup(GROUP, self.consumer, {keys.FEED: start}, count=count,
                                           block=block_ms)
        return self._kept(reply[0][1]) if reply else []     # [[feed, entries]] (RESP2)

    def _kept(self, entries) -> list[FeedEntry]:
        """The entries still in the feed; those trimmed from it while pending (nothing left
        to tell) are acknowledged, or they would stay pending for ever."""
        out = []
        for entry_id, fields in entries:
            if not fields:
                self.ack(replies.text(entry_id))
                continue
            text = replies.text_fields(fields)
            out.append(FeedEntry(replies.text(entry_id), text["app"], Event.from_fields(text),
                                 int(text.get("n") or 0)))
        return out
