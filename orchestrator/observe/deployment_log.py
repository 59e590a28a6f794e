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
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from orchestrator.core import deployment_ids, replies
from orchestrator.core import events as ev
from orchestrator.core.event_log import RecordedEvent, decode_entry
from orchestrator.core.events import EventType
from orchestrator.core.projections import replay
from orchestrator.core.statuses import FINAL_STATUS
from orchestrator.observe.durations import duration
from orchestrator.observe.formatting import iso
from orchestrator.observe.logging_setup import redact
from orchestrator.runtime.services import Services

INFO, WARNING, ERROR = "info", "warning", "error"
STEP_ORDER = ("validate", "materialise", "before_switch", "switch", "activate", "verify")
MARGIN = 600.0          # seconds either side of an id's time searched (clocks disagree)
AFTER_END = 50          # entries looked at after a success, for its worker's ReleasesPruned
# After the end, its notifications are looked for this long (tries with backoff take minutes;
# a notifier stopped for longer tells later, and that shows in the app's history, not here)
# and over at most this many entries.
NOTIFIED_WITHIN = 3600.0
AFTER_NOTIFY = 2000
NOTIFICATIONS = (EventType.NOTIFICATION_DELIVERED, EventType.NOTIFICATION_FAILED)


@dataclass(frozen=True)
class LogLine:
    at: float
    level: str
    step: str
    message: str

    def to_json(self) -> dict:
        return {"at": iso(self.at), "level": self.level, "step": self.step, "message": self.message}

    def text(self) -> str:
        """`12:00:01.234  fetch      fetched 3 files (2 reused) in 41 ms` (local time)"""
        clock = time.strftime("%H:%M:%S", time.localtime(self.at)) + f".{int(self.at % 1 * 1000):03d}"
        return f"{clock}  {self.step:<10} {self.message}"


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
                yield from _lines(r.event, queued)


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


def log_lines(deployment_id: str, events: Iterable[ev.Event]) -> list[LogLine]:
    """The log of one deployment from its events, in order (pure)."""
    lines: list[LogLine] = []
    queued: ev.DeploymentQueued | None = None
    for e in events:
        if isinstance(e, ev.DeploymentQueued):
            queued = e
        if getattr(e, "deployment_id", deployment_id) == deployment_id:
            lines.extend(_lines(e, queued))
    return lines


def _lines(e: ev.Event, queued: ev.DeploymentQueued | None) -> list[LogLine]:
    if isinstance(e, ev.DeploymentQueued):
        return [LogLine(e.at, INFO, "queue", _queued(e))]
    if isinstance(e, ev.DeploymentStarted):
        return [LogLine(e.at, INFO, "start", f"attempt {e.attempt} started on {e.worker}")]
    if isinstance(e, ev.SnapshotBuilt):
        return _snapshot_lines(e, queued)
    if isinstance(e, ev.BuildStarted | ev.BuildOutput | ev.BuildSucceeded | ev.BuildFailed):
        return build_lines(e)
    if isinstance(e, ev.DeploymentSwitched):
        # A first switch is the `switch` step's line at the end, in time order with the
        # steps before it; a switch again is a worker resuming, worth a line of its own.
        return [_switched_again(e)] if e.again else []
    if isinstance(e, ev.HealthCheckStarted | ev.HealthCheckPassed | ev.HealthCheckFailed
                  | ev.RevisionRejected):
        return [_after_switch_line(e)]
    if isinstance(e, ev.DeploymentActivated):
        ran = f"{_count(e.actions, 'action')} ran in {duration(e.seconds)}"
        return [LogLine(e.at, INFO, "activate", f"activated: {ran}")]
    if isinstance(e, ev.ActivationFailed):
        kept = "; the new release stays live (on_failure: keep)" if e.kept else ""
        return [LogLine(e.at, WARNING if e.kept else ERROR, "activate", e.reason + kept)]
    if isinstance(e, ev.DeploymentRolledBack):
        return [LogLine(e.at, WARNING, "rollback", e.how)]
    if isinstance(e, ev.DeploymentRetrying):
        return [LogLine(e.at, WARNING, "retry", f"attempt {e.attempt} failed: {e.reason}; "
                                                f"attempt {e.attempt + 1} in {duration(e.retry_in)}")]
    if isinstance(e, ev.DeploymentSkipped):
        return [LogLine(e.at, INFO, "skip", f"nothing to deploy: {e.reason}")]
    if isinstance(e, ev.DeploymentSuperseded):
        return [LogLine(e.at, INFO, "supersede", f"superseded by deployment {e.by}, which "
                                                 "deploys a newer change instead")]
    if isinstance(e, ev.DeploymentSucceeded):
        return _step_lines(e.at, e.steps, e.release) + [
            LogLine(e.at, INFO, "live", f"live: the target shows release {_name(e.release)}")]
    if isinstance(e, ev.DeploymentFailed):
        return _step_lines(e.at, e.steps, "") + [LogLine(e.at, ERROR, e.step or "failed", e.reason)]
    if isinstance(e, ev.ReleasesPruned):
        return [LogLine(e.at, INFO, "retention", f"removed {_count(len(e.releases), 'old release')}: "
                                                 + ", ".join(_name(r) for r in e.releases))]
    if isinstance(e, ev.NotificationDelivered | ev.NotificationFailed):
        return [_notified(e)]
    return []


def _notified(e: ev.NotificationDelivered | ev.NotificationFailed) -> LogLine:
    if isinstance(e, ev.NotificationDelivered):
        tries = f" after {_tries(e.attempts)}" if e.attempts > 1 else ""
        return LogLine(e.at, INFO, "notify", f"{e.channel}: {e.event} delivered{tries} (HTTP {e.status})")
    return LogLine(e.at, WARNING, "notify", f"{e.channel}: {e.event} not delivered, after "
                                            f"{_tries(e.attempts)}: {redact(e.reason)}")


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _switched_again(e: ev.DeploymentSwitched) -> LogLine:
    before = f"previous {_name(e.previous)}" if e.previous else "nothing was live before"
    return LogLine(e.at, WARNING, "switch", f"a worker took the deployment up again: switched to "
                                            f"release {_name(e.release)} again ({before})")


def _after_switch_line(e: ev.Event) -> LogLine:
    if isinstance(e, ev.HealthCheckStarted):
        return LogLine(e.at, INFO, "verify", f"health check started: {redact(e.url)}")
    if isinstance(e, ev.HealthCheckPassed):
        return LogLine(e.at, INFO, "verify", f"healthy after {duration(e.healthy_after_s)}: "
                                             f"{_count(e.probes, 'probe')}, {e.failures} failed"
                                             f"{_latency(e.latency_ms)}; verified in {duration(e.seconds)}")
    if isinstance(e, ev.HealthCheckFailed):
        then = "kept: the new release stays live (on_failure: keep)" if e.kept else "rolling back"
        return LogLine(e.at, WARNING if e.kept else ERROR, "verify",
                       f"health check failed after {_count(e.probes, 'probe')} in "
                       f"{duration(e.seconds)}: {e.reason} ({then})")
    assert isinstance(e, ev.RevisionRejected)
    return LogLine(e.at, WARNING, "reject", f"revision {e.revision[:12]} rejected: {e.reason}; "
                                            "automatic triggers do not deploy it again")


def _latency(latency_ms: dict | None) -> str:
    if not latency_ms:
        return ""
    return ", " + ", ".join(f"{k} {v:g} ms" for k, v in latency_ms.items())


def _queued(e: ev.DeploymentQueued) -> str:
    if e.snapshot:
        origin = f" of deployment {e.origin}" if e.origin else ""
        return (f"queued ({e.trigger}): snapshot {e.snapshot[:12]}{origin}, "
                f"revision {e.revision[:12]}, deployed as it is")
    return f"queued ({e.trigger}): revision {e.revision[:12]}"


def _snapshot_lines(e: ev.SnapshotBuilt, queued: ev.DeploymentQueued | None) -> list[LogLine]:
    took = f" in {duration(e.seconds)}" if e.seconds is not None else ""
    size = f"{_count(e.files, 'file')}, {size_text(e.bytes)}"
    if queued is not None and queued.snapshot == e.snapshot and not e.blobs_added + e.blobs_reused:
        return [LogLine(e.at, INFO, "snapshot", f"snapshot {e.snapshot[:12]} ({size}) "
                                                f"taken as it is, nothing fetched{took}")]
    read = e.blobs_added + e.blobs_reused
    fetched = f"fetched {_count(read, 'file')} ({e.blobs_reused} reused){took}"
    if e.incremental:
        fetched += ": only what changed since the live revision"
    how = "the live snapshot plus the changes" if e.incremental else "every file of the revision"
    return [LogLine(e.at, INFO, "fetch", fetched),
            LogLine(e.at, INFO, "snapshot", f"snapshot {e.snapshot[:12]}: {size}, built from {how}")]


def build_lines(e: ev.Event) -> list[LogLine]:
    if isinstance(e, ev.BuildStarted):
        asked = f" (asked for by {e.why})" if e.why else ""
        return [LogLine(e.at, INFO, "build", f"building: {', '.join(e.steps)}{asked}")]
    if isinstance(e, ev.BuildOutput):
        lines = [LogLine(e.at, INFO, e.step, line) for line in e.lines]
        left_out = [LogLine(e.at, WARNING, e.step, f"... {_count(e.dropped, 'more line')} of output "
                                                   "left out of the log")] if e.dropped else []
        return lines + left_out
    if isinstance(e, ev.BuildSucceeded):
        ran = ", ".join(f"{step} {'from the cache' if took == 'cached' else duration(took)}"
                        for step, took in (e.steps or {}).items())
        what = "nothing ran, every step's output came from the cache" if e.cached else \
            f"done in {duration(e.seconds)}"
        return [LogLine(e.at, INFO, "build", f"build {what} ({ran}): {_count(e.files_added, 'file')} "
                                             f"({size_text(e.bytes_added)}) added to the snapshot, "
                                             f"now {e.snapshot[:12]}")]
    if isinstance(e, ev.BuildFailed):
        how = (f"killed after its {e.timed_out.replace('_', ' ')}" if e.timed_out
               else f"exited with code {e.exit_code}")
        return [LogLine(e.at, ERROR, e.step, f"`{e.command}` {how}")]
    return []


def _step_lines(end: float, steps: dict | None, release: str) -> list[LogLine]:
    """One line per timed step; each ends where the next begins, the last at `end`."""
    steps = steps or {}
    names = [s for s in STEP_ORDER if s in steps] + sorted(s for s in steps if s not in STEP_ORDER)
    lines, at = [], end
    for name in reversed(names):
        lines.append(LogLine(at, INFO, name, _step_message(name, steps[name], release)))
        at -= steps[name]
    return lines[::-1]


def _step_message(step: str, seconds: float, release: str) -> str:
    took = duration(seconds)
    if step == "validate":
        return f"the app's layout is valid ({took})"
    if step == "materialise":
        return f"built release {_name(release)} in {took}" if release else f"built the release in {took}"
    if step == "before_switch":
        return f"the before_switch check passed ({took})"
    if step == "switch":
        return f"switched the target to the new release in {took}"
    if step == "activate":
        return f"the activate actions took {took}"
    if step == "verify":
        return f"the health check took {took}"
    return f"{step} done in {took}"


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _name(release: str) -> str:
    return release.rstrip("/").rpartition("/")[2] or release


def dumps(log: DeploymentLog) -> str:
    return json.dumps(log.to_json(), indent=2)
