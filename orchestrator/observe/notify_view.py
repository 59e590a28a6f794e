"""Notifications as operators see them (`sluice queue`, GET /api/queue, the dashboard,
/metrics): how many feed entries the notifiers hold unacknowledged (the consumer group's
XPENDING count) and which deliveries are failing now, between two tries (`sluice:notify:
failing`, as notifying/failing.py writes it).

Read here, below the notifier: observe may not import notifying (it sits above observe), and
people look at these figures most when no notifier runs at all.
"""
from __future__ import annotations

import json

import redis

from orchestrator.core import keys, replies
from orchestrator.observe.formatting import iso
from orchestrator.observe.logging_setup import redact


def pending(client: redis.Redis) -> int:
    """Feed entries handed to a notifier and not yet acknowledged; 0 before any notifier ran."""
    try:
        return int(client.xpending(keys.FEED, keys.NOTIFIER_GROUP)["pending"])
    except redis.ResponseError as exc:
        if "NOGROUP" in str(exc):
            return 0
        raise


def failing_entries(client: redis.Redis) -> dict[str, dict]:
    """delivery -> what the notifier noted of it (app, channel, event, attempts, error, next_at)."""
    return {replies.text(k): json.loads(v)
            for k, v in replies.hash_fields(client.hgetall(keys.NOTIFY_FAILING)).items()}


def failing_count(client: redis.Redis) -> int:
    return int(client.hlen(keys.NOTIFY_FAILING))


def failing(client: redis.Redis, now: float) -> list[dict]:
    """The deliveries failing now, the next try soonest first."""
    rows = [{"delivery": delivery, "app": f.get("app"), "channel": f.get("channel"),
             "event": f.get("event"), "attempts": f.get("attempts"), "error": redact(f.get("error") or ""),
             "next_at": iso(f.get("next_at")),
             "next_in": round(max(0.0, f["next_at"] - now), 3) if f.get("next_at") else None}
            for delivery, f in failing_entries(client).items()]
    return sorted(rows, key=lambda r: (r["next_at"] or "", r["delivery"]))


def notifications(client: redis.Redis, now: float) -> dict:
    return {"pending": pending(client), "failing": failing(client, now)}
