"""One attempt at one deployment: lease, snapshot, validate, release, fenced switch, prune.

Every step is recorded as an event. A deployment that has already ended is left alone, so
a redelivered or duplicated task does nothing.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.settings import AppConfig
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute, execute_with_outcome
from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.lease import Lease
from orchestrator.core.masking import MaskingFilter, mask, mask_fields
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.after_switch import (
    Switched,
    confirm,
    resumed_candidate,
    roll_back,
    switched_fields,
)
from orchestrator.deploying.before_switch import Candidate, check_before_switch
from orchestrator.deploying.build import BuildContext, Events, LiveBuild, ToRecord, build
from orchestrator.deploying.dispatch import enqueue
from orchestrator.deploying.housekeeping import clean_up, cleaning_begins, let_go_of_old_releases
from orchestrator.deploying.live_base import starts_from_live
from orchestrator.deploying.retries import FailedAttempt, decide_after_failure
from orchestrator.deploying.rollout import Rollout, roll_out
from orchestrator.observe.metrics import keep_current
from orchestrator.observe.store_metrics import record_corrupt_blobs
from orchestrator.releases.integrity import CorruptBlob, Quarantine
from orchestrator.releases.materialise import (
    Previous,
    live_release,
    materialise,
    release_dir,
    switch,
)
from orchestrator.releases.snapshots import Base, Snapshot, SnapshotStore
from orchestrator.releases.validation import validate
from orchestrator.runtime.services import Services
from orchestrator.sources import fingerprint, source_for

log = logging.getLogger("sluice.worker")
# The config's ${NAME} secrets are masked in what is recorded and logged about a deployment.
_masking = MaskingFilter()
# Fields the projections read back (ids, paths, fingerprints): masking would break them.
_REFERENCES = ("release", "previous", "snapshot", "revision", "source", "worker", "by")


@dataclass
class WorkerContext:
    services: Services
    store: SnapshotStore
    holder: str


def run(ctx: WorkerContext, app: str, deployment_id: str, attempt: int) -> str:
    """Returns what happened, for logs: the status recorded, or why nothing was done."""
    _masking.secrets = ctx.services.config.secrets
    _masking.watch(logging.getLogger())
    view = ctx.services.projections.app(app)
    d = view.deployments.get(deployment_id)
    if d is None or d.terminal:
        return f"nothing to do ({d.status if d else 'unknown deployment'})"
    config = ctx.services.config.apps.get(app)
    if config is None:
        return _record_end(ctx, app, deployment_id, ev.DeploymentFailed,
                           reason=f"app {app!r} is no longer in the configuration")
    with Lease(ctx.services.redis, app, ctx.holder, ctx.services.config.lease_ttl) as lease:
        outcome = _attempt(ctx, app, config, deployment_id, attempt, lease)
        cleaning_begins(ctx.services, app, ctx.holder)      # never a moment with neither key
    _hand_over(ctx, app, deployment_id)     # after letting go, so the next one can start
    clean_up(ctx.services, ctx.store, ctx.holder, app)
    keep_current(ctx.services, [app])       # a first scrape then folds no whole history
    return outcome


def _attempt(ctx: WorkerContext, app: str, config: AppConfig, deployment_id: str,
             attempt: int, lease: Lease) -> str:
    view = ctx.services.projections.app(app)
    switched = view.deployments[deployment_id].switched     # then it must be seen through
    newer = None if switched else _newer(view, deployment_id)
    if newer is not None:       # e.g. redelivered after its worker died: too late now
        return _record_end(ctx, app, deployment_id, ev.DeploymentSuperseded, by=newer.id)
    if not _record(ctx, app, deployment_id, ev.DeploymentStarted,
                   worker=ctx.holder, attempt=attempt):
        return "nothing to do (ended meanwhile)"
    steps = Steps()
    try:
        if switched:
            return _resume(ctx, app, config, view.deployments[deployment_id], lease, steps,
                           last=max(attempt, view.deployments[deployment_id].resumed + 2)
                           >= config.retry.attempts)
        return _deploy(ctx, app, config, deployment_id, lease, steps)
    except PermanentError as exc:
        return _record_end(ctx, app, deployment_id, ev.DeploymentFailed, reason=str(exc),
                           step=steps.current, steps=steps.done or None)
    except OSError as exc:      # the machine's (a full disk, a read-only mount): say where
        raise TransientError(f"{steps.current or 'deploy'}: {exc}") from exc


class Steps:
    """How long each step of an attempt took, for its events (and so the deployment's log)."""

    def __init__(self):
        self.current, self.done, self._started = "", {}, 0.0

    def begin(self, step: str) -> None:
        self.current, self._started = step, time.perf_counter()

    def end(self, keep: bool = True) -> float:
        seconds = round(time.perf_counter() - self._started, 4)
        if keep:
            self.done[self.current] = seconds
        self.current = ""
        return seconds


def _deploy(ctx: WorkerContext, app: str, config: AppConfig, deployment_id: str,
            lease: Lease, steps: Steps) -> str:
    view = ctx.services.projections.app(app)
    live = _live(view, config)
    d = view.deployments[deployment_id]
    if live and not starts_from_live(ctx.store, app, d, live):
        live = None     # neither diffed from nor copied, nor skipped: rebuilt, its blobs hashed
    steps.begin("fetch")
    snapshot, source = _snapshot(ctx, config, d, live)
    built = (ev.SnapshotBuilt, dict(
        snapshot=snapshot.id, files=snapshot.files, bytes=snapshot.bytes,
        blobs_added=snapshot.blobs_added, blobs_reused=snapshot.blobs_reused, source=source,
        incremental=snapshot.incremental, seconds=steps.end(keep=False), **_who(snapshot),
        at=ctx.services.clock.now()))
    if not d.preset_snapshot or d.rebuild or d.trigger == "zipdeploy":     # a zip holds sources
        steps.begin("build")
        snapshot = _build(ctx, app, config, d, snapshot, live, built) or snapshot
        steps.end(keep=False)       # its timings are BuildSucceeded's
    else:
        _record_all(ctx, app, deployment_id, [built])
    if live and live.snapshot == snapshot.id and _everywhere(view, config, live):
        return _record_end(ctx, app, deployment_id, ev.DeploymentSkipped, snapshot=snapshot.id,
                           reason=f"snapshot {snapshot.id[:12]} is already live "
                                  f"(deployment {view.active_deployment})")
    previous = Previous(ctx.store.manifest(live.snapshot), Path(live.release)) \
        if live and live.snapshot and live.release else None      # a success records both
    steps.begin("validate")
    validate(config.layout, snapshot.manifest, ctx.store, previous.manifest if previous else None)
    steps.end()
    if config.hosts:
        return _roll_out(ctx, app, config, deployment_id, snapshot.id, lease, steps)
    steps.begin("materialise")
    try:
        release = materialise(ctx.store, snapshot.manifest,
                              release_dir(ctx.services.config.data_dir, app, deployment_id),
                              previous, snapshot.fresh)
    except CorruptBlob:
        record_corrupt_blobs(ctx.services.redis, "deployment")
        raise
    steps.end()
    candidate = Candidate(app, deployment_id, d.revision, Path(release), live_release(config.target),
                          config.target)
    if config.before_switch:
        steps.begin("before_switch")
        check_before_switch(config, ctx.services.config.data_dir, candidate)
        steps.end()
    return _switch_and_confirm(ctx, config, candidate, lease, steps, snapshot.id)


def _switch_and_confirm(ctx: WorkerContext, config: AppConfig, candidate: Candidate, lease: Lease,
                        steps: Steps, snapshot: str, resumed: DeploymentView | None = None) -> str:
    """Switch (again, when resuming), activate and verify; succeed, or fail rolled back."""
    if resumed is None or not (resumed.rollback or resumed.rolled_back):
        steps.begin("switch")       # recorded first: a worker dying in between switches again
        if not _record(ctx, candidate.app, candidate.deployment_id, ev.DeploymentSwitched,
                       **switched_fields(candidate, again=resumed is not None)):
            raise TransientError("the deployment ended before its switch")
        switch(config.target, candidate.release, lease.token, lease.check)
        steps.end()
    steps.done.update(confirm(_switched(ctx, config, candidate, lease), resumed))
    outcome = _record_end(ctx, candidate.app, candidate.deployment_id, ev.DeploymentSucceeded,
                          snapshot=snapshot, release=str(candidate.release), steps=steps.done)
    let_go_of_old_releases(ctx.services, candidate.app, config)
    return outcome


def _roll_out(ctx: WorkerContext, app: str, config: AppConfig, deployment_id: str, snapshot: str,
              lease: Lease, steps: Steps) -> str:
    """An app with hosts: each of them switches (deploying/rollout.py), or none stays switched."""
    def record(event_type, **fields) -> bool:
        return _record(ctx, app, deployment_id, event_type, **fields)
    steps.begin("rollout")
    revision = ctx.services.projections.app(app).deployments[deployment_id].revision
    roll_out(Rollout(ctx.services, app, config, deployment_id, revision, lease, record))
    steps.end()
    outcome = _record_end(ctx, app, deployment_id, ev.DeploymentSucceeded, snapshot=snapshot, steps=steps.done,
                          release=str(release_dir(ctx.services.config.data_dir, app, deployment_id)))
    let_go_of_old_releases(ctx.services, app, config)
    return outcome


def _resume(ctx: WorkerContext, app: str, config: AppConfig, d: DeploymentView, lease: Lease,
            steps: Steps, last: bool) -> str:
    """A worker died after switching this deployment's release: confirm it, or finish
    rolling it back, rather than build a release the target shows already. Its last attempt
    rolls back without trying again: no attempt is left to put back what it leaves live."""
    candidate = resumed_candidate(app, d, config.target)
    log.warning("%s: deployment %s: resuming after the switch to %s", candidate.app, d.id,
                candidate.release.name, extra={"app": candidate.app, "deployment": d.id})
    if last and not (d.rollback or d.rolled_back):
        reason = f"the switched release was not confirmed within {config.retry.attempts} attempts"
        raise PermanentError(f"{reason}; {roll_back(_switched(ctx, config, candidate, lease), reason)}")
    return _switch_and_confirm(ctx, config, candidate, lease, steps, d.snapshot or "", d)


def _switched(ctx: WorkerContext, config: AppConfig, candidate: Candidate, lease: Lease) -> Switched:
    app, deployment_id = candidate.app, candidate.deployment_id

    def record(event_type, **fields) -> bool:
        return _record(ctx, app, deployment_id, event_type, **fields)
    return Switched(config, candidate, lease, ctx.services.config.data_dir, ctx.services.clock,
                    record, lambda: ctx.services.projections.app(app).active)


def _snapshot(ctx: WorkerContext, config: AppConfig, d: DeploymentView,
              live: DeploymentView | None) -> tuple[Snapshot, str]:
    """The deployment's preset snapshot (redeploy, promote), or one built from its revision;
    with the fingerprint of the source settings it was built under (a later deployment diffs
    from it only under the same settings)."""
    preset = _preset(ctx, d) if d.preset_snapshot else None
    if preset is not None:
        return preset, d.source or ""
    base = None
    live_source = live and (live.source_snapshot or live.snapshot)
    if live and live_source and live.source == fingerprint(config):
        base = Base(live.revision, ctx.store.manifest(live_source))     # not the build's output
    writer = ctx.store.builder(base)
    writer.on_progress = _progress_reporter(ctx, d.id)
    source_for(config, ctx.services.config.data_dir).fetch(d.revision, writer)
    return writer.seal(), fingerprint(config)


def _who(snapshot: Snapshot) -> dict[str, str]:
    c = snapshot.commit
    return {} if c is None else {"author": c.author, "author_email": c.author_email,
                                 "commit_message": c.message}


def _build(ctx: WorkerContext, app: str, config: AppConfig, d: DeploymentView,
           source: Snapshot, live: DeploymentView | None, unsaid: ToRecord) -> Snapshot | None:
    """The source's snapshot with its build's output on top; None when nothing is built.
    `unsaid` (the source's SnapshotBuilt) is recorded with the build's first events."""
    def record_all(events: Events) -> None:
        if not _record_all(ctx, app, d.id, events):
            raise TransientError("the deployment ended while it was building")
    built = LiveBuild(live.snapshot, live.source_snapshot, live.layers) \
        if live and live.snapshot and live.source_snapshot and live.layers else None
    return build(BuildContext(ctx.store, ctx.services.config.data_dir, app, d.id, config, record_all,
                              ctx.services.config.worker.build_concurrency, d.rebuild, built),
                 source, [unsaid])


def _preset(ctx: WorkerContext, d: DeploymentView) -> Snapshot | None:
    """The deployment's preset snapshot, or None for a redeploy to fetch its revision again:
    the manifest was collected, or content it names was quarantined as corrupt."""
    snapshot_id = d.preset_snapshot or ""
    try:
        manifest = ctx.store.manifest(snapshot_id)
    except FileNotFoundError:
        why = f"snapshot {snapshot_id[:12]} is no longer kept (retention removed it)"
    else:
        lost = Quarantine(ctx.store).lost(manifest)
        if not lost:
            return Snapshot(snapshot_id, manifest, 0, 0)
        why = (f"{lost[0]}: its content in snapshot {snapshot_id[:12]} was found corrupt and "
               f"quarantined{f' (and {len(lost) - 1} more files)' if len(lost) > 1 else ''}")
    if d.trigger != "redeploy":     # a promoted revision is not in this app's source
        raise PermanentError(why)
    return None


def _progress_reporter(ctx: WorkerContext, deployment_id: str):
    """Downloads done so far, for `sluice sync --wait`'s progress bar: at most one Redis
    write per 1% (and the first and last)."""
    key, last = keys.progress(deployment_id), [-1]

    def report(done: int, total: int) -> None:
        if done in (0, total) or done * 100 // max(total, 1) != last[0]:
            last[0] = done * 100 // max(total, 1)
            ctx.services.redis.hset(key, mapping={"done": done, "total": total})
            ctx.services.redis.expire(key, 3600)
    return report


def _newer(view: AppView, deployment_id: str) -> DeploymentView | None:
    """The newest deployment queued after this one that is live, running or waiting."""
    ids = list(view.deployments)
    current = [view.deployments[k] for k in ids[ids.index(deployment_id) + 1:]
               if view.deployments[k].status not in (DeploymentStatus.FAILED, DeploymentStatus.SUPERSEDED)]
    return current[-1] if current else None


def _live(view: AppView, config: AppConfig) -> DeploymentView | None:
    """The active deployment, if the target really shows its release and the release is
    there (a redeploy after the release left the disk must not end as skipped). The targets
    of an app with hosts are theirs: which host runs what is `_everywhere`'s to say."""
    active = view.active
    if config.hosts:
        return active if active and active.snapshot else None
    if active and active.snapshot and str(live_release(config.target)) == active.release \
            and os.path.isdir(active.release):
        return active
    return None


def _everywhere(view: AppView, config: AppConfig, live: DeploymentView) -> bool:
    """Whether each of the app's hosts runs the live deployment (always, without hosts)."""
    return all(view.hosts.get(host) == live.id for host in config.hosts)


def _hand_over(ctx: WorkerContext, app: str, finished: str) -> None:
    """Start the deployment waiting behind this one now, rather than at its next retry."""
    view = ctx.services.projections.app(app)
    d = view.deployments.get(finished)
    waiting = view.waiting()
    if d is not None and d.terminal and waiting:
        enqueue(ctx.services, app, waiting[-1].id, waiting[-1].attempts + 1)


def retry_or_fail(ctx: WorkerContext, app: str, deployment_id: str, attempt: int,
                  reason: str) -> str:
    """After a transient failure: schedule the next attempt, fail when none are left, or
    give way to a newer deployment (orchestrator/deploying/retries.py decides which)."""
    config = ctx.services.config.apps.get(app)
    reason = mask(reason, ctx.services.config.secrets)
    failed = FailedAttempt(app, deployment_id, attempt, reason, ctx.services.clock.now())
    _, appended, after = execute_with_outcome(
        ctx.services.projections, app,
        lambda view: decide_after_failure(view, failed, config.retry if config else None))
    for event in appended:
        _log_recorded(app, deployment_id, event)
    if after.hand_over:
        _hand_over(ctx, app, deployment_id)
    if appended and after.retry_in is not None:
        enqueue(ctx.services, app, deployment_id, attempt + 1, countdown=after.retry_in)
    return after.describe()


def _record(ctx: WorkerContext, app: str, deployment_id: str, event_type, **fields) -> bool:
    """Append one event about a deployment unless it has ended meanwhile."""
    return _record_all(ctx, app, deployment_id, [(event_type, fields)])


def _record_all(ctx: WorkerContext, app: str, deployment_id: str, events: Events) -> bool:
    """Append events about a deployment, in one go, unless it has ended meanwhile."""
    now = ctx.services.clock.now()
    masked = [(t, mask_fields(f, ctx.services.config.secrets, keep=_REFERENCES)) for t, f in events]

    def decide(view: AppView):
        d = view.deployments.get(deployment_id)
        if d is None or d.terminal:
            return []
        return [t(app=app, deployment_id=deployment_id, **{"at": now, **f}) for t, f in masked]

    appended = execute(ctx.services.projections, app, decide)[1]
    for event in appended:
        _log_recorded(app, deployment_id, event)
    return bool(appended)


def _log_recorded(app: str, deployment_id: str, event: ev.Event) -> None:
    reason = getattr(event, "reason", None)
    log.info("%s: deployment %s: %s%s", app, deployment_id, event.type,
             f": {reason}" if reason else "",
             extra={"app": app, "deployment": deployment_id, "event": event.type})


def _record_end(ctx: WorkerContext, app: str, deployment_id: str, event_type, **fields) -> str:
    _record(ctx, app, deployment_id, event_type, **fields)
    return event_type.__name__
