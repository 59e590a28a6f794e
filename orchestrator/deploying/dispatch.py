"""Turn a detected change into a queued deployment: events first, then the Celery message.

Pollers, `sluice sync`, redeploy, promote (and later webhooks and pushes) come through here.
The rules, decided on the app's current view in one optimistic append:
- a change to the revision that is live, or already waiting, queues nothing new;
- a new deployment supersedes every older one that has not started yet, so changes that
  arrive during a deployment collapse into one deployment of the newest revision;
- while the app is paused, automatic changes are recorded but not deployed.
"""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.core.deployment_ids import new_deployment_id
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.deploying.task_queue import send_deploy
from orchestrator.runtime.services import Services

AUTOMATIC = ("poll", "webhook", "push")


@dataclass(frozen=True)
class Queued:
    deployment_id: str | None   # None: nothing was queued (see reason)
    revision: str
    new: bool                   # False when an existing deployment covers this change
    reason: str = ""
    status: str = ""            # of the covering deployment


def request_deployment(services: Services, app: str, revision: str, trigger: str,
                       snapshot: str | None = None, origin: str | None = None,
                       source: str | None = None) -> Queued:
    now = services.clock.now()
    deployment_id = new_deployment_id(now)
    outcome: list[Queued] = []

    def decide(view: AppView) -> list[ev.Event]:
        outcome.clear()
        change = [] if revision == view.last_revision else [ev.ChangeDetected(
            app=app, at=now, revision=revision, trigger=trigger, previous=view.last_revision)]
        covered = _covering(view, revision, trigger, snapshot)
        if covered is not None:
            outcome.append(covered)
            return change
        if view.paused and trigger in AUTOMATIC:
            outcome.append(Queued(None, revision, False, f"app is paused ({view.paused})"))
            return change
        outcome.append(Queued(deployment_id, revision, True))
        return change + [ev.DeploymentQueued(
            app=app, at=now, deployment_id=deployment_id, revision=revision, trigger=trigger,
            snapshot=snapshot, origin=origin, source=source)] + [
            ev.DeploymentSuperseded(app=app, at=now, deployment_id=d.id, by=deployment_id)
            for d in view.waiting()]

    execute(services.projections, app, decide)
    result = outcome[0]
    if result.new or result.status == "pending":
        # Pending: its message may have been lost (Redis went away between the append and
        # the send); a duplicate message is harmless, a missing one leaves it waiting forever.
        enqueue(services, app, result.deployment_id)
    return result


def _covering(view: AppView, revision: str, trigger: str, snapshot: str | None) -> Queued | None:
    """An existing deployment that already makes this change live, if any."""
    waiting = next((d for d in view.deployments.values() if not d.terminal
                    and d.revision == revision and d.preset_snapshot == snapshot), None)
    if waiting:
        return Queued(waiting.id, revision, False, f"deployment {waiting.id} is already {waiting.status}",
                      waiting.status)
    active: DeploymentView | None = view.active
    if trigger in AUTOMATIC and active and active.revision == revision and snapshot is None:
        return Queued(active.id, revision, False, f"revision is already live ({active.id})")
    return None


def enqueue(services: Services, app: str, deployment_id: str, attempt: int = 1,
            countdown: float | None = None) -> None:
    send_deploy(services.redis_url, app, deployment_id, attempt, services.clock.now(), countdown)
