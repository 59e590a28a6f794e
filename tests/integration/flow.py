"""Driving deployments through the real path: events, Celery queue, worker."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import redis

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.deploying.sync import head_checks_pending, sync_now
from orchestrator.deploying.task_queue import DEPLOY_QUEUE, priority_lists
from orchestrator.runtime.services import Services
from tests.helpers import wait_for


def wait_until_ended(services: Services, app: str, deployment_id: str,
                     timeout: float = 30) -> DeploymentView:
    def ended():
        d = services.projections.app(app).deployments.get(deployment_id)
        return d if d and d.terminal else None
    return wait_for(ended, timeout, what=f"deployment {deployment_id} to end")


def wait_until_let_go(services: Services, app: str, timeout: float = 30) -> None:
    """Until no worker holds the app's lease nor cleans up after it. A worker records a
    deployment's end first and only then prunes old releases (ReleasesPruned), lets go of
    the app and collects the store, so a deployment that has ended may still have its worker
    busy with the app for a moment."""
    wait_for(lambda: not services.redis.exists(keys.lease(app), keys.cleaning(app)), timeout,
             what=f"the worker to let go of {app} and clean up after it")


def wait_until_settled(services: Services, app: str, timeout: float = 30) -> AppView:
    """Until every trigger of the app has had its head check and no deployment of it waits or
    runs: the app's view then."""
    def settled():
        view = services.projections.app(app)
        busy = head_checks_pending(services, app) or any(not d.terminal for d in view.deployments.values())
        return None if busy else view
    return wait_for(settled, timeout, what=f"the triggers and deployments of {app} to settle")


def sync_and_wait(services: Services, app: str, timeout: float = 30) -> DeploymentView:
    """Deploy the source's head and wait until that deployment is over: ended, and its
    worker done with the app (retention recorded, the lease free for whoever comes next)."""
    queued = sync_now(services, app)
    ended = wait_until_ended(services, app, queued.deployment_id, timeout)
    wait_until_let_go(services, app, timeout)
    return ended


def tree(root: Path) -> dict[str, str]:
    """Every file under root (following the target symlink) and its text."""
    root = Path(root).resolve()
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def site_files(workspace) -> dict[str, bytes]:
    """What the `site` app's target shows, as bytes (as a cloud folder holds them)."""
    return {k: v.encode() for k, v in tree(workspace.target("site")).items()}


def event_types(services: Services, app: str) -> list[str]:
    return [r.event.type for r in services.store.read(app)]


def deploy_messages(services: Services, deployment_id: str) -> list[dict]:
    """The headers of the deploy queue's messages for the deployment: those waiting in the
    queue and those a worker holds and has not acknowledged yet (kombu's `unacked` hash)."""
    with services.redis.pipeline() as pipe:        # one consistent look at both places
        for key in priority_lists(DEPLOY_QUEUE):
            pipe.lrange(key, 0, -1)
        pipe.hvals("unacked")
        *waiting, held = pipe.execute()
    messages = [json.loads(raw) for found in waiting for raw in found]
    messages += [json.loads(raw)[0] for raw in held]
    return [m["headers"] for m in messages if _args(m)[1:2] == [deployment_id]]


def wait_until_drained(services: Services, deployment_id: str, timeout: float = 30) -> None:
    """Until the worker has dealt with every task sent for the deployment: none waits, none is
    held unacknowledged. Seen twice in a row, because kombu takes a message off the queue
    and records it as unacknowledged in two steps, and one look may fall between them."""
    looks = []

    def drained() -> bool:
        looks.append(not deploy_messages(services, deployment_id))
        return looks[-2:] == [True, True]
    wait_for(drained, timeout, what=f"the tasks of deployment {deployment_id} to be done")


def _args(message: dict) -> list:
    try:
        return list(json.loads(base64.b64decode(message["body"]))[0])
    except (KeyError, ValueError, TypeError, IndexError):
        return []           # not a Celery task message


def recorded_deployment(services: Services, app: str, n: int = 1) -> None:
    """A successful deployment `{app}-d{n}` as its events say it, with no worker."""
    dep = f"{app}-d{n}"
    services.store.append(app, [
        ev.DeploymentQueued(app=app, at=n, deployment_id=dep, revision=f"r{n}", trigger="manual"),
        ev.DeploymentStarted(app=app, at=n, deployment_id=dep, worker="w"),
        ev.DeploymentSucceeded(app=app, at=n, deployment_id=dep, snapshot=f"s{n}", release=f"/r/{dep}"),
    ], ANY_VERSION)


def database_of_its_own(redis_url: str, db: int) -> str:
    """The session's Redis at database `db`, emptied: the session's worker uses database 0,
    and its reaper reads and caches every app's view now and then."""
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    redis.Redis.from_url(url).flushdb()
    return url
