"""Kudu's deployments API under each app's Kudu root, /scm/{app}: `GET /api/deployments`
(newest first), `/api/deployments/latest`, `/api/deployments/{id}` and its `/log`, in
Kudu's JSON (api/kudu_json.py); `PUT /api/deployments/{id}` deploys that deployment's
snapshot again (a redeploy, answered as a zip deploy is: api/kudu_answers.py), unless its body
is a client's status report: Kudu records those as deployments run elsewhere, Sluice's history
holds only the deployments it ran, so a report is 400 (not 409, which Kudu's clients retry for
minutes), never a redeploy. Every route needs the app's deployment credentials, as Kudu's do.
"""
from __future__ import annotations

import json

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from orchestrator.api.apps import known_app
from orchestrator.api.deployment_login import logged_in
from orchestrator.api.errors import error_response
from orchestrator.api.kudu_answers import answer_queued, kudu_root
from orchestrator.core import deployment_ids, history_pages
from orchestrator.core.errors import NotFound
from orchestrator.deploying.operator_actions import redeploy
from orchestrator.observe.deployment_log import find_log
from orchestrator.observe.kudu_json import deployment_json, log_json
from orchestrator.runtime.services import Services

router = APIRouter()
LATEST = "latest"           # Kudu's name for the newest deployment, polled after an async push
LISTED = 100


@router.get("/scm/{app}/api/deployments")
async def list_deployments(app: str, request: Request) -> Response:
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    return JSONResponse(await run_in_threadpool(_listed, _services(request), app, kudu_root(request, app)))


@router.get("/scm/{app}/api/deployments/{deployment_id}")
async def show_deployment(app: str, deployment_id: str, request: Request,
                          deployer: str | None = Query(None), time: str | None = Query(None)) -> Response:
    """`latest` (with Kudu's `deployer` and `time`, which change nothing) is the newest."""
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    return JSONResponse(await run_in_threadpool(_shown, _services(request), app, deployment_id,
                                                kudu_root(request, app)))


@router.get("/scm/{app}/api/deployments/{deployment_id}/log")
async def deployment_log(app: str, deployment_id: str, request: Request) -> Response:
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    services = _services(request)
    wanted = await run_in_threadpool(_deployment_id, services, app, deployment_id)
    log = await run_in_threadpool(find_log, services, wanted, app)
    if log is None:
        raise NotFound(f"app {app!r} has no deployment {deployment_id!r}")
    return JSONResponse(log_json(log.deployment_id, log.lines))


@router.put("/scm/{app}/api/deployments/{deployment_id}")
async def deploy_again(app: str, deployment_id: str, request: Request) -> Response:
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    if status_report(await request.body()):
        return error_response(400, f"a status report for deployment {deployment_id!r}: Sluice records "
                              "only the deployments it runs (a zip deploy is in the history by "
                              "itself); to deploy one again, PUT without a report")
    services = _services(request)
    wanted = await run_in_threadpool(_deployment_id, services, app, deployment_id)
    queued = await run_in_threadpool(redeploy, services, app, wanted)
    return await answer_queued(request, services, app, queued, background=False)


def status_report(body: bytes) -> bool:
    """Whether `body` is what Kudu records as a deployment run elsewhere (DeploymentController's
    TryParseDeployResult): a JSON object with `status` 3 or 4 and a `message`, `deployer` and
    `author`, as GitHub's webapps-deploy and Azure Pipelines send after deploying."""
    try:
        report = json.loads(body or b"null")
    except ValueError:
        return False
    return (isinstance(report, dict) and report.get("status") in (3, 4)
            and all(isinstance(report.get(k), str) and report[k] for k in ("message", "deployer", "author")))


def _listed(services: Services, app: str, root: str) -> list[dict]:
    page = history_pages.newest(services.projections, known_app(services, app), LISTED)
    return [deployment_json(page.view, d, root) for d in page.deployments]


def _shown(services: Services, app: str, deployment_id: str, root: str) -> dict:
    wanted = _deployment_id(services, app, deployment_id)
    view, d = deployment_ids.of_app(services.projections, app, wanted)
    return deployment_json(view, d, root)


def _deployment_id(services: Services, app: str, deployment_id: str) -> str:
    if deployment_id != LATEST:
        known_app(services, app)
        return deployment_id
    newest = history_pages.newest(services.projections, known_app(services, app), 1).deployments
    if not newest:
        raise NotFound(f"app {app!r} has no deployments yet")
    return newest[0].id


def _services(request: Request) -> Services:
    return request.app.state.services
