"""Rollback: switch the target back to a kept release at once, and pause automatic
deployments so the next poll does not undo it (`sluice resume` follows the source again).
A kept release holding content found corrupt (releases/integrity.py) is never switched to.
An app on hosts (issue 19) keeps its releases on them: its rollback is a deployment of the
chosen one's snapshot, rolled out to every host as any deployment is (all or nothing), the
app paused as soon as it is queued."""
from __future__ import annotations

import time

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.core.deployment_ids import new_deployment_id
from orchestrator.core.errors import PermanentError
from orchestrator.core.lease import Lease, LeaseBusy
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.releases.integrity import Quarantine
from orchestrator.releases.materialise import live_release, switch
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.services import Services

LEASE_PATIENCE = 30.0


def rollback(services: Services, app: str, to: str | None = None, holder: str = "cli") -> DeploymentView:
    """Returns the deployment record of the rollback (trigger `rollback`): ended, or for an
    app on hosts queued."""
    if services.config.apps[app].hosts:
        return _roll_out_again(services, app, to)
    target = services.config.apps[app].target
    with _lease(services, app, holder) as lease:
        view = services.projections.app(app)
        chosen = _choose(view, to, str(live_release(target)), _corrupt_files(services))
        snapshot, release = chosen.snapshot, chosen.release
        if snapshot is None or release is None:     # _choose takes successes: they have both
            raise PermanentError(f"deployment {chosen.id} of {app!r} recorded no release")
        now = services.clock.now()
        rollback_id = new_deployment_id(now)
        execute(services.projections, app, lambda v: [
            ev.DeploymentQueued(app=app, at=now, deployment_id=rollback_id, revision=chosen.revision,
                                trigger="rollback", snapshot=chosen.snapshot, origin=chosen.id),
            ev.DeploymentStarted(app=app, at=now, deployment_id=rollback_id, worker=holder),
            *[ev.DeploymentSuperseded(app=app, at=now, deployment_id=d.id, by=rollback_id)
              for d in v.waiting()]])
        switch(target, release, lease.token, lease.check)
        done = services.clock.now()
        execute(services.projections, app, lambda v: [
            ev.DeploymentSucceeded(app=app, at=done, deployment_id=rollback_id,
                                   snapshot=snapshot, release=release),
            *_paused(v, done, chosen)])
    return services.projections.app(app).deployments[rollback_id]


def _roll_out_again(services: Services, app: str, to: str | None) -> DeploymentView:
    view = services.projections.app(app)
    chosen = _choose(view, to, view.active.release or "" if view.active else "")
    queued = request_deployment(services, app, chosen.revision, "rollback", snapshot=chosen.snapshot,
                                origin=chosen.id, source=chosen.source)
    if queued.deployment_id is None:
        raise PermanentError(f"app {app!r}: the rollback to {chosen.id} was not queued: {queued.reason}")
    now = services.clock.now()
    execute(services.projections, app, lambda v: _paused(v, now, chosen))
    return services.projections.app(app).deployments[queued.deployment_id]


def _paused(view: AppView, now: float, chosen: DeploymentView) -> list[ev.Event]:
    """The app paused, unless it is already, so the next poll does not undo the rollback."""
    return [] if view.paused else [ev.AppPaused(app=view.name, at=now, reason=f"rolled back to {chosen.id}")]


def _corrupt_files(services: Services):
    """What of a deployment's release is a quarantined inode (nothing, most of the time)."""
    store = SnapshotStore(services.config.data_dir / "store")
    quarantine = Quarantine(store)
    if not quarantine.entries():
        return lambda d: []
    return lambda d: quarantine.damaged(store.manifest(d.snapshot), d.release)


def _choose(view: AppView, to: str | None, live: str, corrupt=lambda d: []) -> DeploymentView:
    kept = set(view.kept_releases())
    if to is not None:
        d = view.deployments.get(to)
        if d is None or d.status != DeploymentStatus.SUCCESS:
            raise PermanentError(f"deployment {to!r} of {view.name!r} did not succeed; "
                                 "only successful deployments can be rolled back to")
        if d.release not in kept:
            raise PermanentError(f"the release of deployment {to} is no longer kept "
                                 f"(keep_releases); redeploy it instead: sluice redeploy {view.name} {to}")
        if files := corrupt(d):
            raise PermanentError(f"the release of deployment {to} holds content found corrupt "
                                 f"({', '.join(files[:5])}); redeploy it instead, which fetches "
                                 f"that again: sluice redeploy {view.name} {to}")
        return d
    earlier = [d for d in view.history()
               if d.status == DeploymentStatus.SUCCESS and d.release in kept and d.release != live]
    for d in earlier:
        if not corrupt(d):
            return d
    raise PermanentError(f"app {view.name!r} has no earlier release to roll back to" + (
        f" (the releases of {', '.join(d.id for d in earlier)} hold content found corrupt)"
        if earlier else ""))


def _lease(services: Services, app: str, holder: str) -> Lease:
    """The app's lease, waiting a while for a running deployment to end."""
    deadline = time.monotonic() + LEASE_PATIENCE
    while True:
        try:
            return Lease(services.redis, app, holder, services.config.lease_ttl).acquire()
        except LeaseBusy:
            if time.monotonic() > deadline:
                raise PermanentError(f"a deployment of {app!r} is still running after "
                                     f"{LEASE_PATIENCE:.0f}s; try again when it ends") from None
            time.sleep(0.2)
