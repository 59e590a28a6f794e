"""A deployment's events as the lines of its log: one or a few `LogLine`s per event, in the
words `sluice log`, the API and the dashboard show (deployment_log.py finds the events)."""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.core import events as ev
from orchestrator.observe.durations import duration
from orchestrator.observe.formatting import iso
from orchestrator.observe.logging_setup import redact

INFO, WARNING, ERROR = "info", "warning", "error"
STEP_ORDER = ("validate", "materialise", "before_switch", "switch", "activate", "verify")


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


def log_lines(deployment_id: str, events: Iterable[ev.Event]) -> list[LogLine]:
    """The log of one deployment from its events, in order (pure)."""
    lines: list[LogLine] = []
    queued: ev.DeploymentQueued | None = None
    for e in events:
        if isinstance(e, ev.DeploymentQueued):
            queued = e
        if getattr(e, "deployment_id", deployment_id) == deployment_id:
            lines.extend(event_lines(e, queued))
    return lines


def event_lines(e: ev.Event, queued: ev.DeploymentQueued | None) -> list[LogLine]:
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
