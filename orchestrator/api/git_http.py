"""/git/{app}.git: each app's built-in repository over Git smart HTTP.

`git http-backend` runs as CGI; request bodies stream into it and its answer streams out, so
a pack is never held in memory whole. Every request, clone and push alike, needs HTTP Basic
auth with the app's deployment credentials (the repository holds the app's code), checked
as api/deployment_login.py says.
"""
from __future__ import annotations

import asyncio
import contextlib
import os

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from orchestrator.access.builtin_git import ensure_repository
from orchestrator.api.deployment_login import client_address, logged_in
from orchestrator.config.settings import DEFAULT_CONFIG, builtin_repository
from orchestrator.runtime.services import Services

router = APIRouter()
RPC_SERVICES = ("git-upload-pack", "git-receive-pack")
CHUNK = 64 * 1024
# request header -> CGI variable, passed only when the client sent it
OPTIONAL_CGI = {"content-length": "CONTENT_LENGTH", "content-encoding": "HTTP_CONTENT_ENCODING",
                "git-protocol": "GIT_PROTOCOL"}


@router.get("/git/{app}.git/info/refs")
async def info_refs(app: str, request: Request) -> Response:
    return await _serve(app, "info/refs", request)


@router.post("/git/{app}.git/{service}")
async def rpc(app: str, service: str, request: Request) -> Response:
    return await _serve(app, service, request)


async def _serve(app: str, path: str, request: Request) -> Response:
    services: Services = request.app.state.services
    user = await logged_in(request, app)
    if isinstance(user, Response):
        return user
    if path not in RPC_SERVICES + ("info/refs",):
        return PlainTextResponse("not found\n", 404)
    await run_in_threadpool(ensure_repository, services.config, app)
    return await _run_backend(request, _cgi_environment(request, services, app, path, user))


def _cgi_environment(request: Request, services: Services, app: str, path: str,
                     user: str) -> dict[str, str]:
    repos = builtin_repository(services.config.data_dir, app).parent
    env = {**os.environ,
           "GIT_PROJECT_ROOT": str(repos), "GIT_HTTP_EXPORT_ALL": "1",
           "PATH_INFO": f"/{app}.git/{path}", "QUERY_STRING": request.url.query,
           "REQUEST_METHOD": request.method,
           "CONTENT_TYPE": request.headers.get("content-type", ""),
           "REMOTE_USER": user, "REMOTE_ADDR": client_address(request),
           # For the post-receive hook, which runs inside the repository: relative paths
           # would resolve there, so everything it needs to find is passed absolute.
           "SLUICE_CONFIG": os.path.abspath(os.environ.get("SLUICE_CONFIG") or DEFAULT_CONFIG),
           "SLUICE_DATA_DIR": str(services.config.data_dir),
           "SLUICE_REDIS_URL": services.redis_url}
    env.update({var: request.headers[name] for name, var in OPTIONAL_CGI.items()
                if name in request.headers})
    return env


async def _run_backend(request: Request, env: dict[str, str]) -> Response:
    backend = await asyncio.create_subprocess_exec(
        "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    stdin, stdout = _pipes(backend)
    feeding = asyncio.create_task(_feed(request, stdin))
    try:
        head = await stdout.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        await _stop(backend, stdout, feeding)
        return PlainTextResponse("git http-backend gave no answer\n", 500)
    except BaseException:
        await _stop(backend, stdout, feeding)
        raise
    status, headers = _cgi_head(head)
    return _BackendResponse(_relay(backend, stdout, feeding), status, headers)


def _pipes(backend: asyncio.subprocess.Process) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
    """The backend's stdin and stdout: never None, as it was started with both piped."""
    if backend.stdin is None or backend.stdout is None:
        raise RuntimeError("git http-backend was started without pipes")
    return backend.stdin, backend.stdout


async def _feed(request: Request, stdin: asyncio.StreamWriter) -> None:
    try:
        async for chunk in request.stream():
            stdin.write(chunk)
            await stdin.drain()
    except (ClientDisconnect, ConnectionError):
        pass        # a short body: the backend notices and fails the request itself
    finally:
        stdin.close()


async def _relay(backend: asyncio.subprocess.Process, stdout: asyncio.StreamReader,
                 feeding: asyncio.Task):
    try:
        while chunk := await stdout.read(CHUNK):
            yield chunk
    finally:
        await _stop(backend, stdout, feeding)


async def _stop(backend: asyncio.subprocess.Process, stdout: asyncio.StreamReader,
                feeding: asyncio.Task) -> None:
    """Once the answer is out (or abandoned) the backend needs no more of the body."""
    feeding.cancel()
    if not stdout.at_eof():
        with contextlib.suppress(ProcessLookupError):
            backend.kill()
    await backend.wait()


def _cgi_head(head: bytes) -> tuple[int, dict[str, str]]:
    status, headers = 200, {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name] = value.strip()
    return status, headers


class _BackendResponse(StreamingResponse):
    """A StreamingResponse without its watch for disconnects: that watch calls receive(),
    which would take chunks of a request body still flowing into the backend."""

    async def __call__(self, scope, receive, send) -> None:
        await self.stream_response(send)
