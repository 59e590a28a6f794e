"""Operator commands that are decisions on events: pause, resume, redeploy, promote."""
from __future__ import annotations

from orchestrator.core import deployment_ids
from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.core.errors import PermanentError
from orchestrator.core.projections import DeploymentView
from orchestrator.deploying.dispatch import Queued, request_deployment
from orchestrator.deploying.sync import sync_now
from orchestrator.runtime.services import Services

OPERATOR = "paused by an operator"


def pause(services: Services, app: str, reason: str = OPERATOR) -> bool:
    """Stop automatic deployments; False if they were stopped already."""
    now = services.clock.now()
    _, appended = execute(services.projections, app, lambda view: [] if view.paused else [
        ev.AppPaused(app=app, at=now, reason=reason)])
    return bool(appended)


def resume(services: Services, app: str) -> Queued:
    """Follow the source again: its head deploys now unless it is what is live."""
    now = services.clock.now()
    execute(services.projections, app, lambda view: [
        ev.AppResumed(app=app, at=now)] if view.paused else [])
    return sync_now(services, app, trigger="manual")


def redeploy(services: Services, app: str, deployment_id: str | None = None,
             rebuild: bool = False) -> Queued:
    """Run a deployment's snapshot again (default: the active one) as a new deployment;
    `rebuild`: its source's snapshot, built again without the layer cache."""
    d = _deployment(services, app, deployment_id)
    snapshot = (d.source_snapshot or d.snapshot) if rebuild else d.snapshot
    return request_deployment(services, app, d.revision, "redeploy", snapshot=snapshot,
                              origin=d.id, source=d.source, rebuild=rebuild)


def promote(services: Services, from_app: str, to_app: str) -> Queued:
    """Deploy what is live on `from_app` to `to_app`, without fetching or rebuilding."""
    d = _deployment(services, from_app, None)
    return request_deployment(services, to_app, d.revision, "promote", snapshot=d.snapshot,
                              origin=f"{from_app}/{d.id}", source=d.source)


def _deployment(services: Services, app: str, deployment_id: str | None) -> DeploymentView:
    if deployment_id:
        return deployment_ids.of_app(services.projections, app, deployment_id)[1]
    active = services.projections.app(app).active
    if active is None:
        raise PermanentError(f"app {app!r} has nothing live yet")
    return active
