"""Kudu's push deployments under each app's Kudu root, /scm/{app} (what
https://{app}.scm.azurewebsites.net is on Azure): `POST /api/zipdeploy`, OneDeploy's
`POST /api/publish?type=zip` and the zip API's `PUT /api/zip/site/wwwroot/`.

The body streams to a scratch file (413 past `api.max_zip_bytes`), is checked and stored as
a snapshot (deploying/zip_deploy.py; a hostile entry: 400 naming it) and deployed. Without
`isAsync=true` (`async=true` for publish) the answer waits for the deployment's end: 200
once live (or already live), 500 with the reason if it failed; with it, 202 at once with
`Location` (the deployment's status URL, Kudu's JSON until `complete`) and `Retry-After`.
A synchronous wait that outlasts kudu_answers.SYNC_WAIT turns into that 202 too. Every route needs the
app's deployment credentials (api/deployment_login.py).
"""
from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from orchestrator.api.deployment_login import logged_in
from orchestrator.api.errors import error_response
from orchestrator.api.kudu_answers import answer_queued
from orchestrator.api.uploads import saved_body
from orchestrator.core.errors import ZipRefused
from orchestrator.deploying.dispatch import Who
from orchestrator.deploying.zip_deploy import DEFAULT_MESSAGE, deploy_zip, refuse_zips
from orchestrator.runtime.services import Services

router = APIRouter()
WWWROOT = ("", "/", "site/wwwroot", "/site/wwwroot", "/home/site/wwwroot", "home/site/wwwroot")


@router.api_route("/scm/{app}/api/zipdeploy", methods=["POST", "PUT"])
async def zipdeploy(app: str, request: Request,
                    isAsync: bool = Query(False), deployer: str = Query("ZipDeploy"),  # noqa: N803
                    message: str = Query(DEFAULT_MESSAGE), author: str | None = Query(None),
                    authorEmail: str | None = Query(None)) -> Response:  # noqa: N803
    who = Who(deployer=deployer, author=author, author_email=authorEmail, commit_message=message)
    return await _push(app, request, who, isAsync)


@router.api_route("/scm/{app}/api/publish", methods=["POST", "PUT"])
async def publish(app: str, request: Request, type: str | None = Query(None),  # noqa: A002
                  async_: bool = Query(False, alias="async"), path: str | None = Query(None),
                  clean: bool | None = Query(None), restart: bool = Query(True)) -> Response:
    """OneDeploy with `type=zip`: every Sluice deployment replaces the whole app (clean), so
    `clean` changes nothing; `restart` is the app's `activate` setting's business."""
    if (type or "").lower() != "zip":
        return error_response(400, f"type={type!r} is not supported: Sluice deploys zips (type=zip)")
    if (path or "") not in WWWROOT:
        return error_response(400, f"path={path!r}: a zip is deployed as the whole app "
                              "(site/wwwroot), not into a folder of it")
    return await _push(app, request, Who(deployer="OneDeploy", commit_message="OneDeploy"), async_)


@router.put("/scm/{app}/api/zip/site/wwwroot/")
async def zip_upload(app: str, request: Request) -> Response:
    return await _push(app, request, Who(deployer="Zip-API", commit_message=DEFAULT_MESSAGE), False)


async def _push(app: str, request: Request, who: Who, background: bool) -> Response:
    user = await logged_in(request, app)
    if isinstance(user, Response):
        return user
    services: Services = request.app.state.services
    await run_in_threadpool(refuse_zips, services, app)       # before the body is read
    folder = services.config.data_dir / "store" / "tmp"
    async with saved_body(request, folder, services.config.api.max_zip_bytes,
                          "api.max_zip_bytes") as body:
        try:
            queued = await run_in_threadpool(deploy_zip, services, app, body, who)
        except ZipRefused as refused:
            return error_response(refused.status, str(refused))
    return await answer_queued(request, services, app, queued, background)
