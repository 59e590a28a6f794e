"""Kudu's read access under each app's Kudu root, /scm/{app}: the live release's files through
`GET /api/vfs/site/wwwroot/{path}` (a file's bytes, or a folder, its path ending in `/`, as
Kudu's VfsStatEntry list) and the whole release (or a folder of it) as a zip through
`GET /api/zip/site/wwwroot/`. Writes through vfs answer 409: releases are immutable, a
change is a deployment (zip deploy).

Reads come from the live release only, its target resolved once per request
(releases/live_files.py): a path climbing out (`..`, absolute) is 400, a symlink leading
out of the release is 404 as a missing file is. The zip is built in an anonymous scratch
file in the zip threads, off the event loop, then streamed. Every route needs the app's
deployment credentials (api/deployment_login.py).
"""
from __future__ import annotations

import mimetypes
import os
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from typing import IO
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from orchestrator.api.deployment_login import logged_in
from orchestrator.api.errors import error_response
from orchestrator.api.threads import in_own_threads
from orchestrator.core.errors import NotFound
from orchestrator.releases.live_files import LiveRelease, etag, listing, live_release, locate
from orchestrator.releases.readable_release import readable_target
from orchestrator.releases.release_zip import write_release_zip
from orchestrator.runtime.services import Services

router = APIRouter()
VFS = "/scm/{app}/api/vfs/site/wwwroot/{path:path}"
ZIP = "/scm/{app}/api/zip/site/wwwroot/{path:path}"
SITE_PATH = "/home/site/wwwroot/"     # where Kudu on Linux shows the site; not our disk's layout
READ_ONLY = ("releases are read-only: a change is a deployment; deploy a zip instead "
             "(POST /scm/{app}/api/zipdeploy)")
ZIP_THREADS = 2
CHUNK = 256 * 1024
_TYPES = mimetypes.MimeTypes()      # the built-in table only: the same answer on every machine


@router.api_route(VFS, methods=["GET", "HEAD"])
async def read(app: str, path: str, request: Request) -> Response:
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    if (refused := _climbing(path)) is not None:
        return refused
    release = await run_in_threadpool(_live, request, app)
    found = await run_in_threadpool(locate, release, path.rstrip("/"))
    if os.path.isdir(found) != (path == "" or path.endswith("/")):
        return _redirect(request, path)
    if os.path.isdir(found):
        return JSONResponse(await run_in_threadpool(_entries, release, found, request, path))
    return await run_in_threadpool(_file, found, request)


@router.api_route(VFS, methods=["PUT", "DELETE", "POST", "PATCH"])
async def write(app: str, path: str, request: Request) -> Response:
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    return error_response(409, READ_ONLY.format(app=app))


@router.get(ZIP)
async def download_zip(app: str, path: str, request: Request) -> Response:
    if isinstance(denied := await logged_in(request, app), Response):
        return denied
    if (refused := _climbing(path)) is not None:
        return refused
    release = await run_in_threadpool(_live, request, app)
    found = await run_in_threadpool(locate, release, path.rstrip("/"))
    if not os.path.isdir(found):        # Kudu zips folders only
        raise NotFound(f"{path!r} is not a folder of the live release of {app!r}")
    scratch = await in_own_threads(request.app, "zips", ZIP_THREADS, _zipped, request, found)
    name = f"{os.path.basename(path.rstrip('/')) or 'wwwroot'}.zip"
    size = os.fstat(scratch.fileno()).st_size
    return StreamingResponse(_chunks(scratch), media_type="application/zip", headers={
        "Content-Length": str(size), "Content-Disposition": f'attachment; filename="{name}"'})


def _climbing(path: str) -> Response | None:
    if path.startswith("/") or "\0" in path or ".." in path.split("/"):
        return error_response(400, f"{path!r}: paths are relative to site/wwwroot and stay in "
                              "it (no '..', not absolute)")
    return None


def _live(request: Request, app: str) -> LiveRelease:
    config = _services(request).config.apps.get(app)
    if config is None:
        raise NotFound(f"no app named {app!r}")
    return live_release(app, readable_target(_services(request), app))


def _redirect(request: Request, path: str) -> Response:
    """Kudu's 307 to the same path with its `/` put right: a folder ends in one, a file not."""
    url = request.url
    wanted = url.path[:-1] if path.endswith("/") else url.path + "/"
    return RedirectResponse(str(url.replace(path=wanted)), 307)


def _entries(release: LiveRelease, folder: str, request: Request, path: str) -> list[dict]:
    base = str(request.url.replace(query="")).rstrip("?")
    query = f"?{request.url.query}" if request.url.query else ""
    shown = SITE_PATH + path
    return [{"name": e.name, "size": e.size, "mtime": _time(e.mtime), "crtime": _time(e.ctime),
             "mime": "inode/directory" if e.folder else "inode/symlink" if e.leaves else _mime(e.name),
             "href": base + quote(e.name + ("/" if e.folder else "")) + query,
             "path": shown + e.name}
            for e in listing(release, folder)]


def _file(found: str, request: Request) -> Response:
    # O_NONBLOCK: a FIFO a release should never hold cannot hang the thread either
    stream = os.fdopen(os.open(found, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")
    info = os.fstat(stream.fileno())
    if not stat.S_ISREG(info.st_mode):
        stream.close()
        raise NotFound(f"{os.path.basename(found)!r} is not a file")
    tag = etag(info)
    headers = {"ETag": tag, "Last-Modified": formatdate(info.st_mtime, usegmt=True)}
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        stream.close()
        return Response(status_code=304, headers=headers)
    return StreamingResponse(_chunks(stream), media_type=_mime(found),
                             headers={**headers, "Content-Length": str(info.st_size)})


def _zipped(request: Request, folder: str) -> IO[bytes]:
    scratch_dir = _services(request).config.data_dir / "store" / "tmp"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryFile(dir=scratch_dir)      # nameless: nothing left by a crash
    try:
        write_release_zip(folder, scratch)
        scratch.seek(0)
        return scratch
    except BaseException:
        scratch.close()
        raise


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()


def _mime(name: str) -> str:
    return _TYPES.guess_type(name, strict=False)[0] or "application/octet-stream"


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _services(request: Request) -> Services:
    return request.app.state.services
