"""Driving deployments through the real path: events, Celery queue, worker."""
from __future__ import annotations

from pathlib import Path

from orchestrator.core.projections import DeploymentView
from orchestrator.deploying.sync import sync_now
from orchestrator.runtime.services import Services
from tests.helpers import wait_for


def wait_until_ended(services: Services, app: str, deployment_id: str,
                     timeout: float = 30) -> DeploymentView:
    def ended():
        d = services.projections.app(app).deployments.get(deployment_id)
        return d if d and d.terminal else None
    return wait_for(ended, timeout, what=f"deployment {deployment_id} to end")


def sync_and_wait(services: Services, app: str, timeout: float = 30) -> DeploymentView:
    queued = sync_now(services, app)
    return wait_until_ended(services, app, queued.deployment_id, timeout)


def tree(root: Path) -> dict[str, str]:
    """Every file under root (following the target symlink) and its text."""
    root = Path(root).resolve()
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def event_types(services: Services, app: str) -> list[str]:
    return [r.event.type for r in services.store.read(app)]
