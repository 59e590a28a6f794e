"""A deployment's log: ordered lines derived from its events, so it is replayable like
everything else (`sluice log DEPLOYMENT_ID`, GET /api/deployments/{id}/log).

Each line is {"at", "level", "step", "message"}. The events say it all: DeploymentQueued
(what and why), DeploymentStarted (each attempt), SnapshotBuilt (fetch: files read and
reused, time; snapshot: size), the build's (BuildStarted, the lines its steps printed,
BuildSucceeded or BuildFailed), DeploymentRetrying (why, when the next attempt comes),
after the switch DeploymentSwitched when a worker resumed the deployment (its first switch
is the `switch` step's line), DeploymentActivated or
ActivationFailed, HealthCheckStarted (the URL) and HealthCheckPassed (its probes and
latency) or HealthCheckFailed (why, kept or rolling back), RevisionRejected and
DeploymentRolledBack; DeploymentSucceeded / DeploymentFailed (how long validate,
materialise, before_switch, switch, activate and verify took; a failure's reason, which
names the file or setting at fault, is the last line of its steps), DeploymentSkipped,
DeploymentSuperseded, and the ReleasesPruned its worker appended after it went live; and
each NotificationDelivered / NotificationFailed of its events (a channel told, or never told
and why), those of its end found up to NOTIFIED_WITHIN after it.

Finding a deployment: the apps' compact views know recent and live ones; an older one is
found in its app's stream near the time its id names (ids start with the UTC time they
were queued), so a lookup reads a window of the stream, never the whole of it.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from orchestrator.core import deployment_ids, replies
from orchestrator.core import events as ev
from orchestrator.core.event_log import RecordedEvent, decode_entry
from orchestrator.core.events import EventType
from orchestrator.core.projections import replay
from orchestrator.core.statuses import FINAL_STATUS
from orchestrator.observe.log_lines import LogLine, event_lines, log_lines
from orchestrator.runtime.services import Services

MARGIN = 600.0          # seconds either side of an id's time searched (clocks disagree)
AFTER_END = 50          # entries looked at after a success, for its worker's ReleasesPruned
# After the end, its notifications are looked for this long (tries with backoff take minutes;
# a notifier stopped for longer tells later, and that shows in the app's history, not here)
# and over at most this many entries.
NOTIFIED_WITHIN = 3600.0
AFTER_NOTIFY = 2000
NOTIFICATIONS = (EventType.NOTIFICATION_DELIVERED, EventType.NOTIFICATION_FAILED)


@dataclass(frozen=True)
class DeploymentLog:
    app: str
    deployment_id: str
    status: str
    lines: list[LogLine]

    def to_json(self) -> dict:
        return {"deployment": self.deployment_id, "app": self.app, "status": self.status,
                "lines": [line.to_json() for line in self.lines]}


def find_log(services: Services, deployment_id: str, app: str | None = None) -> DeploymentLog | None:
    """The deployment's log, or None if no app (or not `app`) has such a deployment."""
    found = _find_events(services, deployment_id, app)
    return _log(*found, deployment_id) if found else None


def _find_events(services: Services, deployment_id: str,
                 app: str | None) -> tuple[str, list[RecordedEvent]] | None:
    """The deployment's app and events so far, or None."""
    names = [app] if app else services.store.apps()
    found = deployment_ids.find(services.projections, deployment_id, names, whole_history=False)
    if found is not None:
        view, d = found
        recorded = _events_of(services, view.name, deployment_id, d.received_at)
        if not recorded:        # the producer's clock was far off: read the whole stream
            recorded = _events_of(services, view.name, deployment_id, None)
        return view.name, recorded
    around = deployment_ids.time_of(deployment_id)
    if around is None:
        return None
    for name in names:
        recorded = _events_of(services, name, deployment_id, around)
        if recorded:
            return name, recorded
    return None


@dataclass
class FollowedLog:
    """A deployment's log so far (`log`), and `new_events`: its events appended after."""
    log: DeploymentLog
    recorded: list[RecordedEvent]
    services: Services
    feed_start: str

    def new_events(self, block_ms: int = 1000) -> Iterator[RecordedEvent | None]:
        """The deployment's events after those in `log`, as they are appended, until one ends
        it (at once if it had ended); None after each `block_ms` without one."""
        if any(r.event.type in FINAL_STATUS for r in self.recorded):
            return
        seen = max((r.version for r in self.recorded), default=0)
        deployment_id = self.log.deployment_id
        for r in self.services.store.follow(self.feed_start, block_ms, app=self.log.app):
            if r is not None and (r.version <= seen
                                  or getattr(r.event, "deployment_id", None) != deployment_id):
                continue
            yield r
            if r is not None and r.event.type in FINAL_STATUS:
                return

    def new_lines(self, block_ms: int = 1000) -> Iterator[LogLine | None]:
        """The log's lines after `log`'s, as their events come, until the deployment ends;
        None after each `block_ms` without one."""
        queued = next((r.event for r in self.recorded if isinstance(r.event, ev.DeploymentQueued)), None)
        for r in self.new_events(block_ms):
            if r is None:
                yield None
            else:
                yield from event_lines(r.event, queued)


def follow_log(services: Services, deployment_id: str, app: str | None = None) -> FollowedLog | None:
    """find_log, and what follows it (FollowedLog.new_lines): `sluice log --follow`, `sluice
    sync --wait`. The feed is read from before the log, so no event falls between the two."""
    feed_start = services.store.feed_last_id()
    found = _find_events(services, deployment_id, app)
    if found is None:
        return None
    name, recorded = found
    return FollowedLog(_log(name, recorded, deployment_id), recorded, services, feed_start)


def _log(app: str, recorded: list[RecordedEvent], deployment_id: str) -> DeploymentLog:
    d = replay(app, recorded, compact=False).deployments[deployment_id]
    return DeploymentLog(app, deployment_id, d.status, log_lines(deployment_id, (r.event for r in recorded)))


def _events_of(services: Services, app: str, deployment_id: str,
               around: float | None) -> list[RecordedEvent]:
    """The deployment's events (from its DeploymentQueued on), the ReleasesPruned its
    worker appended after it went live and the notifications of its end; [] if its
    DeploymentQueued is not in the window."""
    start = "-" if around is None else str(max(0, int((around - MARGIN) * 1000)))
    give_up = None if around is None else (around + MARGIN) * 1000
    found: list[RecordedEvent] = []
    ended: tuple[int, int] | None = None        # the end's entry number and stream time (ms)
    pruning = False             # after a success: its worker's retention may follow
    for n, (entry_id, fields) in enumerate(_entries(services, app, start)):
        kind, data = fields.get(b"type", b"").decode(), fields.get(b"data", b"")
        if not found:
            if give_up is not None and _ms(entry_id) > give_up:
                return []
            if kind == EventType.DEPLOYMENT_QUEUED and deployment_id.encode() in data \
                    and isinstance((r := decode_entry(entry_id, fields)).event, ev.DeploymentQueued) \
                    and r.event.deployment_id == deployment_id:
                found.append(r)
            continue
        if ended is not None:
            if n - ended[0] > AFTER_NOTIFY or _ms(entry_id) > ended[1] + NOTIFIED_WITHIN * 1000:
                break
            if pruning and kind == EventType.RELEASES_PRUNED:
                found.append(decode_entry(entry_id, fields))
            if kind in (EventType.DEPLOYMENT_STARTED, EventType.RELEASES_PRUNED) \
                    or n - ended[0] > AFTER_END:
                pruning = False
            if kind in NOTIFICATIONS and _of(r := decode_entry(entry_id, fields), deployment_id):
                found.append(r)
            continue
        if deployment_id.encode() in data and _of(r := decode_entry(entry_id, fields), deployment_id):
            found.append(r)
            if r.event.type in FINAL_STATUS:
                ended, pruning = (n, _ms(entry_id)), isinstance(r.event, ev.DeploymentSucceeded)
    return found


def _of(r: RecordedEvent, deployment_id: str) -> bool:
    return getattr(r.event, "deployment_id", None) == deployment_id


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def _entries(services: Services, app: str, start: str) -> Iterator[replies.StreamEntry]:
    """From the stream time `start` (ms) on; an archived deployment's from the archive."""
    after = None if start == "-" else f"{int(start) - 1}-18446744073709551615"
    for entry_id, fields in services.store.entries(app, after):
        yield entry_id.encode(), {k.encode(): v.encode() for k, v in fields.items()}


def dumps(log: DeploymentLog) -> str:
    return json.dumps(log.to_json(), indent=2)
