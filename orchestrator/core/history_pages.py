"""An app's deployments a page at a time, newest first, at a cost bound by the page, not by
the app's age (`sluice deployments`, GET /api/apps/{app}/deployments).

The cached view holds the newest RECENT deployments (projections.py): a page within them
costs no read of the stream. An older page reads the stream backwards (Redis, then the
archive) until it has met the DeploymentQueued of each deployment it shows; every later
event of those deployments is newer, so each is folded whole. `limit` None: every one.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from orchestrator.core import events as ev
from orchestrator.core.errors import NotFound
from orchestrator.core.event_log import RecordedEvent
from orchestrator.core.page_sizes import HISTORY_PAGE
from orchestrator.core.projections import RECENT, AppView, DeploymentView, Projections, replay

DEFAULT = HISTORY_PAGE


@dataclass(frozen=True)
class Page:
    view: AppView                       # the app's current view: what is live, its name
    deployments: list[DeploymentView]   # newest first

    def as_view(self) -> AppView:
        """The app's view holding just this page's deployments (for the tables)."""
        return replace(self.view, deployments={d.id: d for d in reversed(self.deployments)})


def newest(projections: Projections, app: str, limit: int | None = DEFAULT,
           before: str | None = None) -> Page:
    """At most `limit` deployments, newest first, older than the deployment `before` if
    given (NotFound if the app has none of that id)."""
    if limit is None:
        whole = projections.history(app)
        return Page(whole, _older(whole.history(), before, app))
    view = projections.app(app)
    recent = view.history()[:RECENT]        # exactly the newest RECENT, whatever else it keeps
    ids = [d.id for d in recent]
    start = 0 if before is None else ids.index(before) + 1 if before in ids else None
    if start is not None and start + limit <= len(recent):
        return Page(view, recent[start:start + limit])
    return Page(view, _read_back(projections, app, limit, before))


def _read_back(projections: Projections, app: str, limit: int, before: str | None) -> list[DeploymentView]:
    read: list[RecordedEvent] = []
    wanted = 0
    passed = before is None
    for r in projections.store.read_backwards(app):
        read.append(r)
        if isinstance(r.event, ev.DeploymentQueued):
            if passed:
                wanted += 1
                if wanted == limit:
                    break
            passed = passed or r.event.deployment_id == before
    if not passed:
        raise NotFound(f"app {app!r} has no deployment {before!r}")
    return _older(replay(app, read[::-1], compact=False).history(), before, app)[:limit]


def _older(history: list[DeploymentView], before: str | None, app: str) -> list[DeploymentView]:
    if before is None:
        return history
    ids = [d.id for d in history]
    if before not in ids:
        raise NotFound(f"app {app!r} has no deployment {before!r}")
    return history[ids.index(before) + 1:]
