"""The HTTP API (FastAPI): webhook receivers and the built-in Git repositories; operators' endpoints come next (issue 7)."""
from __future__ import annotations

from fastapi import FastAPI

from ..services import Services
from .git_http import router as git_router
from .hooks import router as hooks_router


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="Sluice", summary="Continuous deployment: webhooks and operations")
    app.state.services = services
    app.include_router(hooks_router)
    app.include_router(git_router)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app
