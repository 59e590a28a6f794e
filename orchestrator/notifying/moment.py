"""The app as an event left it. A notification told late — behind a slow receiver, between
tries, after a restart — still describes the deployment as it was at its event: the pending
state of a deployment that has succeeded since says pending. The app's view is used as it
is when nothing came after the event; else the events from the deployment's queueing up to
the event are replayed, read newest first from the app's stream (so what is read is bounded
by what came after the event, not by the app's history)."""
from __future__ import annotations

from orchestrator.core import events as ev
from orchestrator.core.event_log import RecordedEvent
from orchestrator.core.projections import AppView, Projections, replay


def view_at(projections: Projections, app: str, event: ev.Event, version: int) -> AppView:
    view = projections.app(app)
    deployment = str(getattr(event, "deployment_id", "") or "")
    if not deployment or not version or view.version <= version:
        return view
    since: list[RecordedEvent] = []
    for recorded in projections.store.read_backwards(app):
        if recorded.version > version:
            continue
        since.append(recorded)
        if isinstance(recorded.event, ev.DeploymentQueued) and recorded.event.deployment_id == deployment:
            return replay(app, since[::-1], compact=False)
    return view         # its queueing is gone from the history: as it is now
