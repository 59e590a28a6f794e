"""Turn a detected change into a queued deployment: events first, then the Celery message.

Pollers, `sluice sync` and (later) webhooks and pushes all come through here.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from . import events as ev
from .commands import execute
from .projections import AppView
from .services import Services

DEPLOY_TASK = "sluice.deploy"
DEPLOY_QUEUE = "deploy"


@dataclass(frozen=True)
class Queued:
    deployment_id: str
    revision: str
    new: bool          # False when a deployment of this revision was already waiting


def new_deployment_id(now: float) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)


def request_deployment(services: Services, app: str, revision: str, trigger: str) -> Queued:
    now = services.clock.now()
    deployment_id = new_deployment_id(now)

    def decide(view: AppView) -> list[ev.Event]:
        if _waiting(view, revision):
            return []
        return [ev.ChangeDetected(app=app, at=now, revision=revision, trigger=trigger,
                                  previous=view.last_revision),
                ev.DeploymentQueued(app=app, at=now, deployment_id=deployment_id,
                                    revision=revision, trigger=trigger)]

    view, appended = execute(services.projections, app, decide)
    if not appended:
        return Queued(_waiting(view, revision).id, revision, new=False)
    enqueue(services, app, deployment_id)
    return Queued(deployment_id, revision, new=True)


def _waiting(view: AppView, revision: str):
    return next((d for d in view.deployments.values()
                 if d.revision == revision and not d.terminal), None)


def enqueue(services: Services, app: str, deployment_id: str, attempt: int = 1,
            countdown: float | None = None) -> None:
    from workers.celery_app import celery_for
    celery_for(services.redis_url).send_task(
        DEPLOY_TASK, args=[app, deployment_id, attempt], queue=DEPLOY_QUEUE, countdown=countdown)
