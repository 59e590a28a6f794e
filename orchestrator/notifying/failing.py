"""Deliveries failing now, for operators (`sluice queue`, /api/queue, the dashboard,
/metrics): one Redis hash, `sluice:notify:failing`, a field per delivery between tries
(the app, the channel, the event, tries so far, the last error, when the next try comes),
removed when it ends."""
from __future__ import annotations

import json
import time

import redis

from orchestrator.core import keys
from orchestrator.observe import notify_view


class Failing:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def note(self, delivery: str, app: str, channel: str, event: str, attempts: int,
             error: str, wait: float) -> None:
        self.redis.hset(keys.NOTIFY_FAILING, delivery, json.dumps(
            {"app": app, "channel": channel, "event": event, "attempts": attempts,
             "error": error, "next_at": time.time() + wait}))

    def done(self, delivery: str) -> None:
        self.redis.hdel(keys.NOTIFY_FAILING, delivery)

    def all(self) -> dict[str, dict]:
        return notify_view.failing_entries(self.redis)
