"""Deployments recorded straight into an app's stream, as a worker would have recorded them:
for tests of reading history, where running each deployment would add nothing."""
from __future__ import annotations

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.runtime.services import Services


def record_deployments(services: Services, app: str, count: int, prefix: str = "20240101-0000") -> list[str]:
    """`count` successful deployments, oldest first; returns their ids."""
    ids = []
    for n in range(count):
        dep, at = f"{prefix}{n // 60 % 60:02d}-{n:06x}", 1_700_000_000.0 + n
        execute(services.projections, app, lambda view, dep=dep, at=at, n=n: [
            ev.DeploymentQueued(app=app, at=at, deployment_id=dep, revision=f"{n:040x}", trigger="poll"),
            ev.DeploymentStarted(app=app, at=at, deployment_id=dep, worker="w"),
            ev.DeploymentSucceeded(app=app, at=at + 1, deployment_id=dep, snapshot="s", release=f"/r/{dep}")])
        ids.append(dep)
    return ids
