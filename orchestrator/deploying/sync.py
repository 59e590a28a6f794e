"""Sync: take a source's head now and deploy it, and the cursor each source's last head check
left (which the poller and `sluice sync` share, so neither re-lists what the other saw)."""
from __future__ import annotations

from orchestrator.core import keys, replies
from orchestrator.core.errors import RevisionNotFound
from orchestrator.deploying.dispatch import Queued, request_deployment
from orchestrator.runtime.services import Services
from orchestrator.sources import fingerprint, source_for


def read_cursor(services: Services, name: str, fallback: bool = True) -> str | None:
    """The cursor of the last head check under the current source settings; else (with
    `fallback`) the last revision queued, which is a git or hg source's cursor too."""
    raw = replies.value(services.redis.hget(keys.POLL_CURSOR, name))
    if raw:
        mark, _, cursor = raw.decode().partition(" ")
        if mark == fingerprint(services.config.apps[name]):
            return cursor
    return services.projections.app(name).last_revision if fallback else None


def write_cursor(services: Services, name: str, cursor: str) -> None:
    services.redis.hset(keys.POLL_CURSOR, name,
                        f"{fingerprint(services.config.apps[name])} {cursor}")


def sync_now(services: Services, name: str, trigger: str = "manual") -> Queued:
    """The portal's Sync button: take the source's head now and deploy it (a deployment
    of what is already live ends as skipped)."""
    cursor = read_cursor(services, name)
    change = source_for(services.config.apps[name], services.config.data_dir).latest(cursor)
    if change is None:          # nothing since the last head check, which queued `cursor`'s state
        revision = services.projections.app(name).last_revision
        if revision is None:    # only if the app's stream was deleted under its cursor
            raise RevisionNotFound(f"app {name!r}: its source has not changed since the last head "
                                   "check, and no revision of it is recorded to deploy again")
        return request_deployment(services, name, revision, trigger)
    queued = request_deployment(services, name, change.revision, trigger)
    write_cursor(services, name, change.cursor)
    return queued
