"""The dashboard at `/`: one page, server-rendered from the projections (Jinja2, autoescaped),
so it shows the apps, their live deployments, a target in drift (worded as `sluice apps`
words it), queue depths and the notifications pending and failing, each app's recent history
and the latest events without JavaScript.
`static/dashboard.js` makes it live: it follows `/api/events` (Server-Sent Events), refreshes
an app's row from `/api/apps/{app}` when one of its events arrives (the queue panel then, and
every 5 s: a delivery starts failing without an event), opens a deployment's log,
and posts Sync, Redeploy and Rollback with the operator's API token (pasted once, kept in the
browser's localStorage); Redeploy and Rollback replace what is live, so they ask to confirm
first, and a Sync of a head that was rejected (it rolled back by itself) says why and asks
whether to deploy it anyway (`force`). An app's row lists its rejected revisions, and, for an
app with hosts, each host with the deployment it runs, those lagging marked (as `sluice apps`
marks them); a deployment's row in the history each host's word on it.

Data is only rendered into the page for a client the API's read policy lets read
(access.can_read: `api.reads`); otherwise the page asks for the token and loads its data
through the API with it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from orchestrator.api.access import can_read
from orchestrator.core import keys, replies
from orchestrator.core.events import Event, EventType
from orchestrator.core.projections import AppView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.observe.durations import PAGE, took
from orchestrator.observe.fleet_table import drift_text, rejected_lines
from orchestrator.observe.formatting import deployment_json, event_fields, iso
from orchestrator.observe.host_states import host_runs
from orchestrator.observe.queue_view import inspect_queue
from orchestrator.runtime.services import Services

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
HISTORY = 10          # deployments shown per app
FEED = 30             # latest events shown when the page loads

# The page runs only its own script and style (no inline code, nothing from elsewhere) and
# may not be framed, so another site can neither inject into it nor click its buttons for you.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
router = APIRouter()
_templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(request: Request) -> HTMLResponse:
    services: Services = request.app.state.services
    readable = may_read(request)
    context = await run_in_threadpool(page_context, services, readable)
    html = _templates.get_template("dashboard.html").render(**context)
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
def static_file(name: str) -> FileResponse:
    """The page's own CSS and JS (no CDN: the page works on a closed network)."""
    path = STATIC / name
    if name not in {p.name for p in STATIC.iterdir()} or path.suffix not in STATIC_TYPES:
        raise HTTPException(404, "no such file")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix])


def may_read(request: Request) -> bool:
    """Whether this request may see the data without more ado: the API's read policy."""
    try:
        can_read(request, None)
    except HTTPException:
        return False
    return True


def page_context(services: Services, readable: bool) -> dict:
    config = services.config
    events = latest_events(services, FEED) if readable else []
    return {
        "readable": readable,
        "apps": [app_row(services, name, view) for name, view in
                 zip(config.apps, services.projections.apps(config.apps))] if readable else [],
        "queue": inspect_queue(services) if readable else None,
        "events": events,
        # the live feed goes on from the newest event shown, so none is missed in between
        "feed_since": (events[0]["id"] if events else "0-0") if readable else "",
        "event_types": " ".join(sorted(t for t in EventType if t != EventType.UNKNOWN)),
        "statuses": DeploymentStatus,
        "token_configured": bool(config.api.token),
        "rendered_at": iso(time.time()),
    }


def app_row(services: Services, name: str, view: AppView) -> dict:
    """One app as the page shows it; the deployments have the API's JSON shape."""
    app = services.config.apps[name]
    history = view.history()
    return {
        "name": name, "layout": app.layout, "source": app.source.describe(),
        "continuous": app.source.type != "manual",
        "paused": view.paused, "waiting": len(view.waiting()), "drift": drift_text(view),
        "rejected": rejected_lines(view),
        "hosts": [run.to_json() for run in host_runs(view, app.hosts)],
        "active": deployment_json(view, view.active) if view.active else None,
        "latest": deployment_json(view, history[0]) if history else None,
        "history": [{**deployment_json(view, d), "took": took(d.started_at, d.ended_at, PAGE)}
                    for d in history[:HISTORY]],
    }


def latest_events(services: Services, count: int) -> list[dict]:
    """The newest events of every app (from the feed), newest first."""
    entries = replies.entries(services.redis.xrevrange(keys.FEED, "+", "-", count=count))
    return [event_item(entry_id.decode(), replies.text_fields(fields))
            for entry_id, fields in entries]


def event_item(entry_id: str, fields: dict) -> dict:
    event = Event.from_fields(fields)
    data = json.loads(fields.get("data") or "{}")
    return {"id": entry_id, "app": fields.get("app") or event.app, "type": event.type,
            "at": iso(event.at) if event.at else None,
            "detail": event_fields(data, blank=(None, "", []))}
