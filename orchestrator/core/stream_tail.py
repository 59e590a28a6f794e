"""How much of an app's stream stays in the store, and which of its oldest events may go to
the archive (core/event_archive.py) now.

An app's stream keeps its newest `keep` events (config `events.keep_in_redis`); once it is
`batch(keep)` longer, the oldest beyond the tail are archived, then removed: a trim costs a
file per batch, not a write per event. Never archived while it is still needed in Redis:
the event the cached projection last saw and any after it (its catch-up reads after that
id), nor the DeploymentQueued of a deployment not yet ended and any after it (its log and
its worker's resumption read its events).
"""
from __future__ import annotations

from collections.abc import Sequence

import orjson

from orchestrator.core.event_archive import Entry, id_key
from orchestrator.core.events import EventType
from orchestrator.core.projections import AppView

KEEP = 500


def batch(keep: int) -> int:
    """How far past its tail a stream grows before it is trimmed."""
    return max(keep // 2, 1)


def due(length: int, keep: int) -> bool:
    return length > keep + batch(keep)


def removable(oldest: Sequence[Entry], view: AppView | None) -> list[Entry]:
    """Of the stream's oldest entries beyond its tail (oldest first), those that may leave
    it: none when no projection is cached (nothing says which deployments run)."""
    if view is None or view.last_id is None:
        return []
    seen = id_key(view.last_id)
    running = {d.id for d in view.deployments.values() if not d.terminal}
    cut: list[Entry] = []
    for entry in oldest:
        entry_id, fields = entry
        if id_key(entry_id) >= seen or _queues(fields, running):
            break
        cut.append(entry)
    return cut


def unarchived(cut: Sequence[Entry], archived_last: str | None) -> list[Entry]:
    """What of `cut` the archive lacks (a trim cut short after archiving wrote some)."""
    done = id_key(archived_last) if archived_last else (-1, -1)
    return [e for e in cut if id_key(e[0]) > done]


def _queues(fields: dict[str, str], running: set[str]) -> bool:
    if fields.get("type") != EventType.DEPLOYMENT_QUEUED or not running:
        return False
    return orjson.loads(fields.get("data") or "{}").get("deployment_id") in running
