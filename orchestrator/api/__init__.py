"""The HTTP API (FastAPI): webhook receivers, the built-in Git repositories, operators'
endpoints (/api/..., see apps.py), the store served to host workers (/store/..., see
host_store.py), /healthz and /readyz.

Errors are JSON {"error": message}, never a traceback: a Host the API does not answer to 421
(hosts.py), an unknown app or deployment 404, a
request the app's state refuses 409, a source or Redis out of reach (or no Redis configured)
503 with Retry-After, anything else 500 {"error": "internal error"} with the traceback in the
server's log.
"""
from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from orchestrator.api.apps import router as apps_router
from orchestrator.api.dashboard import router as dashboard_router
from orchestrator.api.errors import Error, error_response
from orchestrator.api.git_http import router as git_router
from orchestrator.api.hooks import router as hooks_router
from orchestrator.api.host_store import router as host_store_router
from orchestrator.api.hosts import HostCheck
from orchestrator.api.observe import router as observe_router
from orchestrator.api.scm_deploy import router as scm_deploy_router
from orchestrator.api.scm_deployments import router as scm_deployments_router
from orchestrator.api.scm_files import router as scm_files_router
from orchestrator.api.scm_hooks import router as scm_hooks_router
from orchestrator.core.errors import ConfigError, NotFound, SluiceError, TransientError
from orchestrator.observe.queue_view import answering_workers
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.api")


class Readiness(BaseModel):
    status: str
    redis: str
    workers: int


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="Sluice", summary="Continuous deployment: webhooks and operations")
    app.state.services = services
    app.add_middleware(HostCheck, names=services.config.api.host_names)
    add_error_handlers(app)
    app.include_router(apps_router)
    app.include_router(hooks_router)
    app.include_router(git_router)
    app.include_router(dashboard_router)
    app.include_router(observe_router)
    app.include_router(scm_deploy_router)
    app.include_router(scm_deployments_router)
    app.include_router(scm_files_router)
    app.include_router(scm_hooks_router)
    app.include_router(host_store_router)

    @app.get("/healthz")
    async def healthz() -> dict:        # on the event loop: busy worker threads do not delay it
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Error}})
    async def readyz():
        """Ready when Redis answers and at least one worker answers a ping."""
        return await run_in_threadpool(readiness, services)

    return app


def readiness(services: Services):
    try:
        services.redis.ping()
    except (redis.RedisError, ConfigError) as exc:      # ConfigError: no Redis to look for
        return error_response(503, f"cannot reach Redis: {exc}", redis="unreachable", workers=0)
    try:
        seen = answering_workers(services)
    except Exception:       # the broker answered PING but not the broadcast: not ready
        log.warning("pinging the workers failed", exc_info=True)
        seen = 0
    if not seen:
        return error_response(503, "no worker answered (is `sluice worker` running?)",
                              redis="ok", workers=0)
    return {"status": "ready", "redis": "ok", "workers": seen}


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                             for e in exc.errors())
        return error_response(422, f"invalid request: {problems}", detail=jsonable_encoder(exc.errors()))

    @app.exception_handler(SluiceError)
    async def refused(_: Request, exc: SluiceError):
        if isinstance(exc, NotFound):
            return error_response(404, str(exc))
        if isinstance(exc, (TransientError, ConfigError)):     # ConfigError: e.g. no Redis yet
            return error_response(503, str(exc), {"Retry-After": "5"})
        return error_response(409, str(exc))

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def redis_away(_: Request, exc: redis.RedisError):
        return error_response(503, f"cannot reach Redis: {exc}", {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error")
