"""/api/...: what operators and the dashboard read and do: apps, deployments, sync, redeploy,
rollback and the queue. Reads need `can_read`, changes `can_change` (see access.py).

Deployments are shown as `sluice deployments --json` shows them (formatting.deployment_json).
An unknown app or deployment is a 404 {"error": ...}; what the app's state refuses (nothing
live yet, no earlier release, a manual app's sync) a 409; see create_app's handlers.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from orchestrator.api.access import can_change, can_read
from orchestrator.api.errors import Error
from orchestrator.api.fleet_cache import FleetCache
from orchestrator.api.threads import in_own_threads
from orchestrator.core import deployment_ids, history_pages
from orchestrator.core.errors import NotFound
from orchestrator.core.projections import AppView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.observe.fleet_pages import API_MAX_PAGE, API_PAGE, fleet_page
from orchestrator.observe.formatting import deployment_json, drift_json
from orchestrator.observe.host_states import host_runs
from orchestrator.observe.queue_view import inspect_queue
from orchestrator.runtime.services import Services

DETAIL_DEPLOYMENTS = 20
FLEET_THREADS = 2       # a page of many apps is CPU work: more threads would only share the GIL


class Deployment(BaseModel):
    id: str
    app: str
    status: str = Field(description=", ".join(DeploymentStatus))
    revision: str | None
    snapshot: str | None
    active: bool = Field(description="this deployment's release is the live one")
    trigger: str
    message: str
    received_at: str | None = Field(description="ISO 8601, UTC")
    started_at: str | None
    ended_at: str | None
    attempts: int
    author: str | None = Field(None, description="the commit's author, or a zip deploy's client's")
    author_email: str | None = None
    deployer: str | None = Field(None, description="the tool a zip deploy's client named")
    commit_message: str | None = Field(None, description="the commit's message, or a zip deploy's")
    change: str = Field("", description="the message's first line and who: what `sluice deployments` shows")
    hosts: dict[str, str] = Field({}, description="an app with hosts: each host's word on this deployment: "
                                  "switched, failed: why, unhealthy: why (switched back there), rolled back")


class Drift(BaseModel):
    kind: str = Field(description="missing, elsewhere, release gone, occupied")
    detail: str = Field(description="what the check found, naming the paths")
    repair: str = Field(description="switch, redeploy, wait (for deployment_id), none (left alone)")
    deployment_id: str | None
    since: str | None = Field(description="ISO 8601, UTC: when this drift was first recorded")
    text: str = Field(description="the drift as `sluice apps` and the dashboard show it")


class HostRun(BaseModel):
    host: str
    deployment_id: str | None = Field(description="the deployment the host runs; null: nothing")
    state: str = Field(description="in step (runs the active deployment), behind (runs another, or "
                       "nothing), rolling out (switched to a deployment not ended yet)")
    text: str = Field(description="the host as `sluice apps` and the dashboard show it")


class App(BaseModel):
    name: str
    layout: str
    source: str
    target: str
    paused: str | None = Field(description="why automatic deployments are paused; null if not")
    continuous: bool = Field(description="the app has a source (not `manual`)")
    active: Deployment | None
    running: Deployment | None
    waiting: int = Field(description="deployments queued and not started")
    drift: Drift | None = Field(description="the target does not show the active release, as the "
                                "last drift check found; null: it does")
    rejected: dict[str, str] = Field(description="revisions that rolled back by themselves, with why: "
                                     "automatic triggers do not deploy them (`force` does)")
    hosts: list[HostRun] = Field(description="the hosts the app lives on (config `hosts`, in its order) "
                                 "and what each runs; empty: it lives where its workers build it")


class AppDetail(App):
    deployments: list[Deployment] = Field(description=f"newest first, up to {DETAIL_DEPLOYMENTS}")


class QueuedDeployment(BaseModel):
    app: str
    deployment_id: str | None = Field(description="null when nothing was queued (see reason)")
    revision: str | None
    new: bool = Field(description="false when an existing deployment already covers this")
    reason: str


class RedeployRequest(BaseModel):
    deployment_id: str | None = Field(None, description="default: the active deployment")
    rebuild: bool = Field(False, description="build its source's files again, without the cache "
                          "of build layers (as `sluice redeploy --rebuild`)")


class SyncRequest(BaseModel):
    rebuild: bool = Field(False, description="build without the cache of build layers (as `sluice "
                          "sync --rebuild`)")
    force: bool = Field(False, description="deploy the head even if it was rejected (as `sluice "
                        "sync --force`)")


REBUILD = Query(False, description="build without the cache of build layers; or in the JSON body")
FORCE = Query(False, description="deploy the head even if it was rejected; or in the JSON body")


class RollbackRequest(BaseModel):
    to: str | None = Field(None, description="a deployment id; default: the previous successful one")


class CeleryQueue(BaseModel):
    name: str
    host: str | None = Field(description="the host whose queue it is (deploy.NAME, for each host the "
                             "config names); null: a shared queue")
    waiting: int
    oldest_age: float | None = Field(description="seconds the oldest waiting message has waited")


class InFlight(BaseModel):
    worker: str | None
    app: str
    deployment_id: str
    status: str = Field(description="building, deploying, activating (switched, telling the "
                        "host) or verifying (switched, probing its health)")
    running_for: float | None = Field(description="seconds since this attempt started")


class Retry(BaseModel):
    app: str
    deployment_id: str
    attempt: int = Field(description="the attempt that is due")
    of: int = Field(description="the app's retry.attempts")
    due_at: str | None
    due_in: float | None = Field(description="seconds; 0 when due already")


class PollDue(BaseModel):
    app: str
    due_in: float


class PollOverdue(BaseModel):
    app: str
    late_by: float


class Polls(BaseModel):
    due_next_minute: list[PollDue]
    overdue: list[PollOverdue]


class FailingDelivery(BaseModel):
    delivery: str = Field(description="the X-Sluice-Delivery of its requests: feed entry id:channel")
    app: str | None
    channel: str | None = Field(description="the channel's type: webhook, slack, github...")
    event: str | None = Field(description="the event being told")
    attempts: int | None = Field(description="tries so far")
    error: str = Field(description="the last try's error or the receiver's answer")
    next_at: str | None
    next_in: float | None = Field(description="seconds to the next try; 0 when due already")


class Notifications(BaseModel):
    pending: int = Field(description="feed entries a notifier took and has not acknowledged")
    failing: list[FailingDelivery] = Field(description="deliveries failing now, between two tries")


class QueueReport(BaseModel):
    queues: list[CeleryQueue]
    in_flight: list[InFlight]
    retries: list[Retry]
    polls: Polls
    notifications: Notifications
    at: str


Responses = dict[int | str, dict[str, Any]]         # FastAPI's type for `responses`
ERRORS: Responses = {401: {"model": Error, "description": "token missing or wrong"},
                     403: {"model": Error, "description": "no api.token configured"}}
NOT_FOUND: Responses = {404: {"model": Error, "description": "unknown app or deployment"}}
REFUSED: Responses = {409: {"model": Error, "description": "the app's state does not allow it"},
                      503: {"model": Error, "description": "the source or Redis cannot be reached now"}}

router = APIRouter(prefix="/api", tags=["operations"], responses=ERRORS)
reading = [Depends(can_read)]
changing = [Depends(can_change)]


@router.get("/apps", response_model=list[App], dependencies=reading)
async def list_apps(request: Request,
                    limit: int = Query(API_PAGE, ge=1, le=API_MAX_PAGE, description="at most this many, "
                                       "in the config's order; a Link header (rel=next) gives the next page"),
                    after: str | None = Query(None, description="only apps after this one (the last "
                                              "name of the previous page)")) -> Response:
    """The configured apps, a page at a time."""
    # Read in a few Redis round trips whatever their number, then only the apps that moved since
    # (api/fleet_cache.py), in threads of their own so a burst of pages leaves the shared threads
    # alone; the event loop only sends the bytes.
    services = _services(request)
    page = fleet_page(services.config.apps, limit, after)
    body = await in_own_threads(request.app, "fleet", FLEET_THREADS, _fleet_cache(request).page,
                                page.names, partial(apps_json, services))
    headers = {"Link": f'<{request.url.include_query_params(after=page.next_after)}>; rel="next"'} \
        if page.next_after else None
    return Response(body, media_type="application/json", headers=headers)


def apps_json(services: Services, names: list[str]) -> list[bytes]:
    """Each app's JSON, as a page splices it in."""
    return [orjson.dumps(app_json(services, name, view))
            for name, view in zip(names, services.projections.apps(names))]


@router.get("/apps/{app}", response_model=AppDetail, dependencies=reading, responses=NOT_FOUND)
def show_app(app: str, request: Request) -> dict:
    services = _services(request)
    view = services.projections.app(known_app(services, app))
    return {**app_json(services, app, view),
            "deployments": [deployment_json(view, d) for d in view.history()[:DETAIL_DEPLOYMENTS]]}


@router.get("/apps/{app}/deployments", response_model=list[Deployment], dependencies=reading,
            responses=NOT_FOUND)
def list_deployments(app: str, request: Request,
                     limit: int = Query(50, ge=1, le=1000, description="at most this many, newest first"),
                     before: str | None = Query(None, description="only deployments older than this "
                                                "one (the last id of the previous page)")
                     ) -> list[dict]:
    services = _services(request)
    page = history_pages.newest(services.projections, known_app(services, app), limit, before)
    return [deployment_json(page.view, d) for d in page.deployments]


@router.get("/deployments/{deployment_id}", response_model=Deployment, dependencies=reading,
            responses=NOT_FOUND)
def show_deployment(deployment_id: str, request: Request) -> dict:
    services = _services(request)
    found = deployment_ids.find(services.projections, deployment_id, services.config.apps)
    if found is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    return deployment_json(*found)


@router.post("/apps/{app}/sync", status_code=202, response_model=QueuedDeployment,
             dependencies=changing, responses={**NOT_FOUND, **REFUSED})
def sync(app: str, request: Request, body: SyncRequest | None = None, rebuild: bool = REBUILD,
         force: bool = FORCE) -> dict:
    """Check the source now and deploy its head (a head that is live ends as skipped; a
    rejected head is not deployed, its reason given, unless `force`)."""
    from orchestrator.deploying.sync import sync_now
    services = _services(request)
    rebuild = rebuild or bool(body and body.rebuild)
    force = force or bool(body and body.force)
    return queued_json(app, sync_now(services, known_app(services, app), trigger="manual",
                                     rebuild=rebuild, force=force))


@router.post("/apps/{app}/redeploy", status_code=202, response_model=QueuedDeployment,
             dependencies=changing, responses={**NOT_FOUND, **REFUSED})
def redeploy(app: str, request: Request, body: RedeployRequest | None = None,
             rebuild: bool = REBUILD) -> dict:
    """Deploy an earlier deployment's snapshot again as a new deployment."""
    from orchestrator.deploying.operator_actions import redeploy as run_again
    services = _services(request)
    wanted = body.deployment_id if body else None
    rebuild = rebuild or bool(body and body.rebuild)
    return queued_json(app, run_again(services, known_app(services, app), wanted, rebuild))


@router.post("/apps/{app}/rollback", response_model=Deployment, dependencies=changing,
             responses={**NOT_FOUND, **REFUSED})
def rollback(app: str, request: Request, body: RollbackRequest | None = None) -> dict:
    """Switch back to a kept release at once and pause automatic deployments (an app on
    hosts: queued, rolled out to them again as a deployment)."""
    from orchestrator.deploying.rollback import rollback as roll_back
    services = _services(request)
    to = body.to if body else None
    if to is not None:      # unknown: a 404 here (to rollback it is one that did not succeed)
        deployment_ids.of_app(services.projections, known_app(services, app), to)
    d = roll_back(services, known_app(services, app), to, holder="api")
    return deployment_json(services.projections.app(app), d)


@router.get("/queue", response_model=QueueReport, dependencies=reading)
def queue(request: Request) -> dict:
    """What waits in each Celery queue, what runs, which retries and polls are due."""
    return inspect_queue(_services(request))


def app_json(services: Services, name: str, view: AppView) -> dict:
    config = services.config.apps[name]
    running = next((d for d in view.history() if d.status.running), None)
    return {"name": name, "layout": config.layout, "source": config.source.describe(),
            "target": str(config.target), "paused": view.paused,
            "continuous": config.source.type != "manual",
            "active": deployment_json(view, view.active) if view.active else None,
            "running": deployment_json(view, running) if running else None,
            "waiting": len(view.waiting()), "drift": drift_json(view),
            "rejected": dict(view.rejected),
            "hosts": [run.to_json() for run in host_runs(view, config.hosts)]}


def queued_json(app: str, queued) -> dict:
    return {"app": app, "deployment_id": queued.deployment_id, "revision": queued.revision,
            "new": queued.new, "reason": queued.reason}


def known_app(services: Services, app: str) -> str:
    if app not in services.config.apps:
        raise NotFound(f"no app {app!r} (configured: {', '.join(services.config.apps) or 'none'})")
    return app


def _services(request: Request) -> Services:
    return request.app.state.services


def _fleet_cache(request: Request) -> FleetCache:
    state = request.app.state
    if getattr(state, "fleet_cache", None) is None:
        state.fleet_cache = FleetCache(_services(request).store.feed_moves)
    return state.fleet_cache
