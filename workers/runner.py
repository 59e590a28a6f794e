"""One attempt at one deployment: lease, fetch, snapshot, validate, release, switch.

Every step is recorded as an event. A deployment that has already ended is left alone, so
a redelivered or duplicated task does nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from orchestrator import events as ev
from orchestrator.backoff import backoff_delay
from orchestrator.commands import execute
from orchestrator.config import AppConfig
from orchestrator.dispatch import enqueue
from orchestrator.errors import PermanentError
from orchestrator.lease import Lease
from orchestrator.projections import AppView, DeploymentView
from orchestrator.services import Services
from orchestrator.sources import fingerprint, source_for
from .deploy import Previous, live_release, materialise, release_dir, switch
from .snapshots import Base, Snapshot, SnapshotStore
from .validate import validate

log = logging.getLogger("sluice.worker")


@dataclass
class WorkerContext:
    services: Services
    store: SnapshotStore
    holder: str


def run(ctx: WorkerContext, app: str, deployment_id: str, attempt: int) -> str:
    """Returns what happened, for logs: the status recorded, or why nothing was done."""
    view = ctx.services.projections.app(app)
    d = view.deployments.get(deployment_id)
    if d is None or d.terminal:
        return f"nothing to do ({d.status if d else 'unknown deployment'})"
    config = ctx.services.config.apps.get(app)
    if config is None:
        return _record_end(ctx, app, deployment_id, ev.DeploymentFailed,
                           reason=f"app {app!r} is no longer in the configuration")
    with Lease(ctx.services.redis, app, ctx.holder) as lease:
        if not _record(ctx, app, deployment_id, ev.DeploymentStarted,
                       worker=ctx.holder, attempt=attempt):
            return "nothing to do (ended meanwhile)"
        try:
            return _deploy(ctx, app, config, deployment_id, lease)
        except PermanentError as exc:
            return _record_end(ctx, app, deployment_id, ev.DeploymentFailed, reason=str(exc))


def _deploy(ctx: WorkerContext, app: str, config: AppConfig, deployment_id: str,
            lease: Lease) -> str:
    view = ctx.services.projections.app(app)
    live = _live(view, config)
    snapshot = _build_snapshot(ctx, config, view.deployments[deployment_id].revision, live)
    _record(ctx, app, deployment_id, ev.SnapshotBuilt, snapshot=snapshot.id,
            files=snapshot.files, bytes=snapshot.bytes,
            blobs_added=snapshot.blobs_added, blobs_reused=snapshot.blobs_reused,
            source=fingerprint(config), incremental=snapshot.incremental)
    if live and live.snapshot == snapshot.id:
        return _record_end(ctx, app, deployment_id, ev.DeploymentSkipped, snapshot=snapshot.id,
                           reason=f"snapshot {snapshot.id[:12]} is already live "
                                  f"(deployment {view.active_deployment})")
    validate(config.layout, snapshot.manifest, ctx.store)
    previous = Previous(ctx.store.manifest(live.snapshot), Path(live.release)) if live else None
    release = materialise(ctx.store, snapshot.manifest,
                          release_dir(ctx.services.config.data_dir, app, deployment_id), previous)
    lease.check()
    switch(config.target, release)
    return _record_end(ctx, app, deployment_id, ev.DeploymentSucceeded,
                       snapshot=snapshot.id, release=str(release))


def _build_snapshot(ctx: WorkerContext, config: AppConfig, revision: str,
                    live: DeploymentView | None) -> Snapshot:
    base = None
    if live and live.source == fingerprint(config):
        base = Base(live.revision, ctx.store.manifest(live.snapshot))
    writer = ctx.store.writer(base)
    source_for(config, ctx.services.config.data_dir).fetch(revision, writer)
    return writer.seal()


def _live(view: AppView, config: AppConfig) -> DeploymentView | None:
    """The active deployment, if the target really shows its release."""
    active = view.active
    if active and active.snapshot and str(live_release(config.target)) == active.release:
        return active
    return None


def retry_or_fail(ctx: WorkerContext, app: str, deployment_id: str, attempt: int,
                  reason: str) -> str:
    """After a transient failure: schedule the next attempt, or fail when none are left."""
    config = ctx.services.config.apps.get(app)
    policy = config.retry if config else None
    if policy is None or attempt >= policy.attempts:
        return _record_end(ctx, app, deployment_id, ev.DeploymentFailed,
                           reason=f"gave up after {attempt} attempts: {reason}")
    delay = backoff_delay(attempt, policy.base, policy.max)
    if _record(ctx, app, deployment_id, ev.DeploymentRetrying,
               attempt=attempt, reason=reason, retry_in=delay):
        enqueue(ctx.services, app, deployment_id, attempt + 1, countdown=delay)
    return f"retrying in {delay:.1f}s"


def _record(ctx: WorkerContext, app: str, deployment_id: str, event_type, **fields) -> bool:
    """Append one event about a deployment unless it has ended meanwhile."""
    now = ctx.services.clock.now()

    def decide(view: AppView):
        d = view.deployments.get(deployment_id)
        if d is None or d.terminal:
            return []
        return [event_type(app=app, at=now, deployment_id=deployment_id, **fields)]

    return bool(execute(ctx.services.projections, app, decide)[1])


def _record_end(ctx: WorkerContext, app: str, deployment_id: str, event_type, **fields) -> str:
    _record(ctx, app, deployment_id, event_type, **fields)
    return event_type.__name__
