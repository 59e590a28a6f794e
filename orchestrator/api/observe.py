"""What operators and their tools watch:

GET /api/deployments/{id}/log   the deployment's log lines, derived from its events
                                (?app= narrows the search); 404 {"error"} for an unknown id
GET /api/events                 Server-Sent Events: every event of `sluice:feed` as it is
                                appended. `id:` is the feed entry id (so a reconnecting
                                EventSource resumes exactly after the last one it got, via
                                Last-Event-ID), `event:` the event type, `data:` the event as
                                JSON (as `sluice events --json` prints it). ?app= keeps one
                                app's events; without Last-Event-ID it starts with the events
                                appended after it connected, or after ?since=ID (0: the whole
                                feed). A comment line every HEARTBEAT_SECONDS keeps proxies
                                from closing a quiet stream. All streams of a process share
                                one reader of the feed (feed_hub.py).
GET /metrics                    Prometheus text format (observe/metrics.py)

All three are reads: `api.reads` decides who needs the token (access.can_read).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from orchestrator.api.access import can_read
from orchestrator.api.errors import error_response
from orchestrator.api.feed_hub import FeedHub, FollowEnded
from orchestrator.observe.deployment_log import find_log
from orchestrator.observe.formatting import iso
from orchestrator.observe.metrics import exposition
from orchestrator.runtime.services import Services

router = APIRouter(dependencies=[Depends(can_read)])
log = logging.getLogger("sluice.api")

HEARTBEAT_SECONDS = 15.0
RECONNECT_MS = 2000             # what an EventSource waits before reconnecting
STREAM_ID = re.compile(r"^\d+(-\d+)?$")


@router.get("/api/deployments/{deployment_id}/log")
def deployment_log(deployment_id: str, request: Request, app: str | None = None) -> JSONResponse:
    services: Services = request.app.state.services
    found = find_log(services, deployment_id, app)
    if found is None:
        where = f" of app {app!r}" if app else ""
        return error_response(404, f"no deployment {deployment_id!r}{where}")
    return JSONResponse(found.to_json())


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        body, content_type = exposition(services, request.headers.get("accept"))
    except redis.RedisError as exc:
        return error_response(503, f"cannot reach Redis: {exc}")
    return Response(body, headers={"Content-Type": content_type})


@router.get("/api/events")
async def events(request: Request, app: str | None = None, since: str | None = None) -> Response:
    services: Services = request.app.state.services
    start = request.headers.get("last-event-id") or since
    if start is not None and not STREAM_ID.match(start):
        return error_response(400, f"not an event id: {start!r} (ids look like 1714564800000-0)")
    if app is not None and app not in services.config.apps and \
            app not in await run_in_threadpool(services.store.apps):
        return error_response(404, f"no app {app!r}")
    hub = feed_hub(request)
    if start is None:       # now: resolved before streaming, so nothing appended from here is missed
        start = await hub.newest()
    return StreamingResponse(_stream(hub, start, app), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def feed_hub(request: Request) -> FeedHub:
    """This process's one reader of the feed (per event loop: its connections belong to one)."""
    hubs = getattr(request.app.state, "feed_hubs", None)
    if hubs is None:
        hubs = request.app.state.feed_hubs = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()
    if loop not in hubs:
        # redis-py's default socket timeout (5 s) is shorter than a quiet stream's XREAD BLOCK
        hubs[loop] = FeedHub(request.app.state.services.redis_url, socket_timeout=HEARTBEAT_SECONDS + 10)
    return hubs[loop]


async def _stream(hub: FeedHub, start: str, app: str | None) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n: sluice events after {start}\n\n"
    wanted = (lambda fields: True) if app is None else (lambda fields: fields.get("app") == app)
    try:
        async for batch in hub.follow(start, wanted, HEARTBEAT_SECONDS):
            if batch:
                yield "".join(sse_message(entry_id, fields) for entry_id, fields in batch)
            else:
                yield ": heartbeat\n\n"
    except FollowEnded as exc:      # the client reconnects with Last-Event-ID
        log.warning("event stream ended: %s", exc)


def sse_message(entry_id: str, fields: dict[str, str]) -> str:
    """One feed entry as an SSE message; data is the event as `sluice events --json` has it."""
    try:
        data = json.loads(fields.get("data") or "{}")
    except ValueError:
        data = {}
    kind = fields.get("type", "message").replace("\n", " ").replace("\r", " ")
    body = {"version": int(fields.get("n", 0)), "id": entry_id, "type": kind, **data,
            "app": data.get("app") or fields.get("app", ""), "at": iso(data.get("at"))}
    return f"id: {entry_id}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"
