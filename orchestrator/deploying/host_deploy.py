"""What an app's host does (issue 19), in its own worker (`sluice worker --host NAME`, with a
`data_dir` of its own: its store, its releases). Asked by a rollout (deploying/rollout.py),
it fetches the snapshot's content its store lacks from the API (releases/remote_store.py),
materialises the release beside its live one as a single machine does, switches its target
under the rollout's fencing token, runs the app's `activate` and `health` there, and records
HostSwitched or HostFailed.

Converging: a host brings its target in step with the app's active deployment — asked by a
rollout that failed elsewhere (HostRolledBack), or by itself when its worker starts and every
`converge_interval` after (HostSwitched, `converged`), under the app's lease of its own then.
A stale request (the deployment ended, or a newer one switched here: Fenced) does nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from orchestrator.config.settings import AppConfig
from orchestrator.core import events as ev
from orchestrator.core.app_views import AppView
from orchestrator.core.errors import ActivationFailed, HealthCheckFailed, SluiceError
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.core.lease import Lease, LeaseBusy, LeaseLost, held_with
from orchestrator.deploying.activation import activate
from orchestrator.deploying.before_switch import Candidate, variables
from orchestrator.deploying.health import verify_health
from orchestrator.deploying.housekeeping import collect_on_host
from orchestrator.deploying.tls import verified_context
from orchestrator.releases.materialise import Fenced, Previous, live_release, materialise, point_at, release_dir, switch
from orchestrator.releases.remote_store import RemoteStore, fetch_snapshot
from orchestrator.releases.retention import prune_host_releases
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.releases.spares import empty_trash
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.host")


@dataclass
class HostContext:
    services: Services          # its config's data_dir is this host's own
    store: SnapshotStore        # this host's
    remote: RemoteStore         # the API's store
    host: str


def switch_here(ctx: HostContext, app: str, deployment_id: str, token: int) -> str:
    """Switch this host to the deployment's release; what happened, for the log."""
    config, view = _app(ctx, app)
    d = view.deployments.get(deployment_id) if config else None
    if config is None or d is None or d.terminal or not d.snapshot:
        return "nothing to do (not this host's app, or the deployment ended)"
    target, check = config.target_on(ctx.host), held_with(ctx.services.redis, app, token)
    previous = live_release(target)
    try:
        release = _release(ctx, app, d.id, d.snapshot, previous, view)
        switch(target, release, token, check)
        kept = _confirm(ctx, config, Candidate(app, d.id, d.revision, release, previous, target, ctx.host))
    except (Fenced, LeaseLost) as exc:      # the rollout is over: it decided without this host
        return f"nothing done: {exc}"
    except (SluiceError, OSError) as exc:
        return _failed(ctx, app, d.id, str(exc), target, previous, token, check)
    if kept is not None:
        return _failed(ctx, app, d.id, kept, target, previous, token, check)
    _append(ctx, ev.HostSwitched(app=app, at=_now(ctx), deployment_id=d.id, host=ctx.host, release=str(release),
                                 previous=str(previous) if previous else None))
    _prune(ctx, app, config, d.id)
    return f"switched to {release}"


def converge_here(ctx: HostContext, app: str, reverting: str | None = None, token: int | None = None) -> str:
    """Bring this host's target in step with the app's active deployment. `reverting`: the
    deployment a failed rollout takes back (under its `token`); else under a lease of its own."""
    config, view = _app(ctx, app)
    if config is None:
        return "nothing to do (not this host's app)"
    if token is not None:
        return _converge(ctx, app, config, view, reverting, token, held_with(ctx.services.redis, app, token))
    try:
        with Lease(ctx.services.redis, app, f"{ctx.host}:converge", ctx.services.config.lease_ttl) as lease:
            assert lease.token is not None
            return _converge(ctx, app, config, ctx.services.projections.app(app), None, lease.token, lease.check)
    except LeaseBusy:
        return "not now: a deployment of the app runs (it brings this host along)"


def _converge(ctx: HostContext, app: str, config: AppConfig, view: AppView, reverting: str | None,
              token: int, check) -> str:
    active, target = view.active, config.target_on(ctx.host)
    previous = live_release(target)
    wanted = release_dir(ctx.services.config.data_dir, app, active.id) if active else None
    try:
        if previous != wanted or (wanted is not None and not wanted.is_dir()):
            point_at(target, _release(ctx, app, active.id, active.snapshot, previous, view)
                     if active is not None and active.snapshot and wanted is not None else None, token, check)
    except (Fenced, LeaseLost) as exc:
        return f"nothing done: {exc}"
    except (SluiceError, OSError) as exc:
        return _not_converged(ctx, view, reverting or (active.id if active else None), str(exc))
    if reverting is not None:
        _append(ctx, ev.HostRolledBack(app=app, at=_now(ctx), deployment_id=reverting, host=ctx.host,
                                       release=str(wanted) if wanted else None))
    elif previous != wanted and active is not None and wanted is not None:
        _append(ctx, ev.HostSwitched(app=app, at=_now(ctx), deployment_id=active.id, host=ctx.host,
                                     release=str(wanted), previous=str(previous) if previous else None,
                                     converged=True))
    return f"in step with {active.id if active else 'nothing live'}"


def _not_converged(ctx: HostContext, view: AppView, deployment_id: str | None, reason: str) -> str:
    """Recorded once per reason: convergence is tried again every converge_interval."""
    d = view.deployments.get(deployment_id or "")
    if d is not None and (d.hosts or {}).get(ctx.host) != f"failed: {reason}":
        _append(ctx, ev.HostFailed(app=view.name, at=_now(ctx), deployment_id=d.id, host=ctx.host, reason=reason))
    return f"not converged: {reason}"


def _release(ctx: HostContext, app: str, deployment_id: str, snapshot: str, live: Path | None,
             view: AppView) -> Path:
    """The deployment's release on this host: its content fetched from the API's store (what
    this host lacks), materialised beside the live release."""
    fetched = fetch_snapshot(ctx.store, ctx.remote, snapshot)
    return materialise(ctx.store, ctx.store.manifest(snapshot),
                       release_dir(ctx.services.config.data_dir, app, deployment_id),
                       _previous(ctx, live, view), fetched.fresh)


def _previous(ctx: HostContext, live: Path | None, view: AppView) -> Previous | None:
    """The live release and its manifest, for a one-file change to cost one file here too."""
    d = view.deployments.get(live.name) if live is not None else None
    if live is None or d is None or not d.snapshot:
        return None
    try:
        return Previous(ctx.store.manifest(d.snapshot), live)
    except (FileNotFoundError, ValueError):
        return None


def _confirm(ctx: HostContext, config: AppConfig, candidate: Candidate) -> str | None:
    """Activate and verify here; None when the release may stay, else why it may not."""
    try:
        if config.activate:
            activate(config.activate, candidate, ctx.services.config.data_dir)
        if config.health is not None:
            with httpx.Client(follow_redirects=False, verify=verified_context()) as client:
                verify_health(config.health, variables(candidate), clock=ctx.services.clock, client=client)
    except (ActivationFailed, HealthCheckFailed) as exc:
        if config.on_failure == "rollback":
            return str(exc)
        log.warning("%s on %s: %s (kept: on_failure is keep)", candidate.app, ctx.host, exc)
    return None


def _failed(ctx: HostContext, app: str, deployment_id: str, reason: str, target: Path,
            previous: Path | None, token: int, check: Callable[[], None]) -> str:
    """Put back what this host's target showed, if it was switched; record why."""
    switched = live_release(target) != previous
    if switched:
        try:
            point_at(target, previous, token, check)
        except (Fenced, LeaseLost):
            switched = False        # what switched since is the newer holder's to keep
    _append(ctx, ev.HostFailed(app=app, at=_now(ctx), deployment_id=deployment_id, host=ctx.host,
                               reason=reason, rolled_back=switched))
    return f"failed: {reason}"


def _prune(ctx: HostContext, app: str, config: AppConfig, live: str) -> None:
    """Old releases out of the way once this host has said it switched (off the rollout's
    path), the trash emptied: a host has no housekeeping of its own besides this."""
    releases = ctx.services.config.data_dir / "releases" / app
    try:
        prune_host_releases(ctx.services.projections.app(app), releases, config.keep_releases, live)
        empty_trash(releases)
        collect_on_host(ctx.services, ctx.store, ctx.host)
    except OSError as exc:
        log.warning("%s on %s: retention failed: %s", app, ctx.host, exc)


def _app(ctx: HostContext, app: str) -> tuple[AppConfig | None, AppView]:
    config = ctx.services.config.apps.get(app)
    if config is not None and ctx.host not in config.hosts:
        config = None
    return config, ctx.services.projections.app(app)


def _append(ctx: HostContext, event: ev.Event) -> None:
    """A host's events are facts about the host, appended whatever the deployment's state."""
    ctx.services.store.append(event.app, [event], ANY_VERSION)
    log.info("%s on %s: %s", event.app, ctx.host, event.type, extra={"app": event.app})


def _now(ctx: HostContext) -> float:
    return ctx.services.clock.now()


def hosts_apps(ctx: HostContext) -> list[str]:
    """The apps that list this host."""
    return [name for name, app in ctx.services.config.apps.items() if ctx.host in app.hosts]

