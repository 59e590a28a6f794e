"""Kudu's generic deploy hook, `POST /scm/{app}/deploy` (Kudu's FetchHandler with its
GenericHandler): a body `{"format": "basic", "url": "...", "is_hg": ...}` (or the form field
`payload=` holding it, as Kudu takes it) asks for the repository at `url` to be deployed.

Sluice syncs the app when `url` is its own source's (sources/repository_urls.py: compared
without credentials, `#commit` or a trailing `.git`): the branch's head is deployed, trigger
`webhook`, answered as the zip deploy is (api/kudu_answers.py: 200 at the end, or 202 with
`Location` for `?isAsync=true`). Another repository (or hg named for a git source) is 409
naming the app's source: Sluice never fetches what a request names. A source without a
URL (manual, dropbox, onedrive) is 409; a body Kudu would not take is 400. The app's
deployment credentials are needed, as on every /scm route.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from orchestrator.api.deployment_login import logged_in
from orchestrator.api.errors import error_response
from orchestrator.api.kudu_answers import answer_queued
from orchestrator.config.sources import RepositorySource
from orchestrator.core.errors import NotFound
from orchestrator.core.urls import sanitize_url
from orchestrator.deploying.sync import sync_now
from orchestrator.runtime.services import Services
from orchestrator.sources.repository_urls import same_repository

router = APIRouter()
MAX_BODY = 64 * 1024        # a hook names a repository; it carries no files
UNSUPPORTED = "The json payload is unsupported."        # Kudu's words


class BadPayload(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@router.post("/scm/{app}/deploy")
async def deploy_hook(app: str, request: Request, isAsync: bool = Query(False)) -> Response:  # noqa: N803
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    services: Services = request.app.state.services
    config = services.config.apps.get(app)
    if config is None:
        raise NotFound(f"no app named {app!r}")
    try:
        url, hg = _asked(request.headers.get("content-type", ""), await _body(request))
    except BadPayload as bad:
        return error_response(bad.status, str(bad))
    source = config.source
    if not isinstance(source, RepositorySource):
        zips = f"; deploy a zip instead (POST /scm/{app}/api/zipdeploy)" if source.type == "manual" else ""
        return error_response(409, f"app {app!r} has no repository to sync: its source is "
                              f"{source.describe()}{zips}")
    if not same_repository(url, source.url) or (hg is not None and hg != (source.scm == "hg")):
        return error_response(409, f"{sanitize_url(url)!r}{' (hg)' if hg else ''} is not the "
                              f"source of app {app!r}: it deploys {source.describe()}")
    queued = await run_in_threadpool(sync_now, services, app, "webhook")
    return await answer_queued(request, services, app, queued, isAsync)


def _asked(content_type: str, body: bytes) -> tuple[str, bool | None]:
    """(url, whether it is hg, if the payload says) from a body Kudu would take."""
    text = body.decode("utf-8", "replace")
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        form = parse_qs(text)
        text = (form.get("payload") or next(iter(form.values()), [""]))[0]
    try:
        payload = json.loads(text)
    except ValueError:
        raise BadPayload("the payload is not JSON: send {\"format\": \"basic\", \"url\": ...}") from None
    if not isinstance(payload, dict) or str(payload.get("format", "")).lower() != "basic" \
            or not isinstance(payload.get("url"), str) or not payload["url"].strip():
        raise BadPayload(f"{UNSUPPORTED} Send {{\"format\": \"basic\", \"url\": ...}}")
    return payload["url"], _hg(payload)


def _hg(payload: dict) -> bool | None:
    """Kudu reads `scm` ("hg"/"git"); its comment and older clients send `is_hg`; an hg@
    URL is hg."""
    if isinstance(payload.get("scm"), str) and payload["scm"]:
        return payload["scm"].lower() == "hg"
    if isinstance(payload.get("is_hg"), bool):
        return payload["is_hg"]
    return True if payload["url"].lower().startswith("hg@") else None


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BadPayload(f"the body is {declared} bytes; a hook's payload takes at most {MAX_BODY}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadPayload(f"the body is over {MAX_BODY} bytes; a hook's payload takes no more", 413)
        chunks.append(chunk)
    return b"".join(chunks)
