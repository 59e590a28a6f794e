"""How the Kudu API answers a request that queued a deployment (a zip deploy, a redeploy):
at once with 202, `Location` (the deployment's Kudu status URL) and `Retry-After` when the
client asked for it in the background; else when the deployment ends: 200 live (or already
live), 500 failed, 409 superseded, each with Kudu's deployment JSON. A wait longer than
SYNC_WAIT answers the 202 after all (Kudu's clients poll then)."""
from __future__ import annotations

import asyncio
import time

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from orchestrator.api.errors import error_response
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.dispatch import Queued
from orchestrator.observe.kudu_json import deployment_json
from orchestrator.runtime.services import Services

SYNC_WAIT = 600.0           # seconds a synchronous request is held before its 202
LOOK_EVERY = 0.1
RETRY_AFTER = "1"
LIVE = (DeploymentStatus.SUCCESS, DeploymentStatus.SKIPPED)


async def answer_queued(request: Request, services: Services, app: str, queued: Queued,
                        background: bool) -> Response:
    if not queued.deployment_id:
        return error_response(409, queued.reason)
    if not background:
        deadline = time.monotonic() + SYNC_WAIT
        while time.monotonic() < deadline:
            view = await run_in_threadpool(services.projections.app, app)
            d = view.deployments.get(queued.deployment_id)
            if d is not None and d.terminal:
                body = deployment_json(view, d, kudu_root(request, app))
                if d.status in LIVE:
                    return JSONResponse(body, 200)
                return JSONResponse({**body, "error": f"deployment {d.id} {d.status}: {d.message}"},
                                    500 if d.status == DeploymentStatus.FAILED else 409)
            await asyncio.sleep(LOOK_EVERY)
    return await run_in_threadpool(_accepted, request, services, app, queued.deployment_id)


def _accepted(request: Request, services: Services, app: str, deployment_id: str) -> Response:
    view = services.projections.app(app)
    root = kudu_root(request, app)
    d = view.deployments.get(deployment_id)
    body = deployment_json(view, d, root) if d else {"id": deployment_id}
    return JSONResponse(body, 202, headers={
        "Location": f"{root}/api/deployments/{deployment_id}", "Retry-After": RETRY_AFTER,
        "SCM-DEPLOYMENT-ID": deployment_id})


def kudu_root(request: Request, app: str) -> str:
    """The app's Kudu root as the client reached it (…/scm/APP)."""
    return f"{str(request.base_url).rstrip('/')}/scm/{app}"
