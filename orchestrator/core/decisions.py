"""Run a decision against an app's current view and append its events, optimistically.

`decide(view)` returns the events to append (or none); if another writer appended first,
the view is reloaded and `decide` asked again, so every decision is made on fresh state.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from orchestrator.core.errors import ConcurrencyError
from orchestrator.core.events import Event
from orchestrator.core.projections import AppView, Projections

ATTEMPTS = 20


def execute(projections: Projections, app: str,
            decide: Callable[[AppView], Sequence[Event]]) -> tuple[AppView, list[Event]]:
    """Returns the view the decision was made on and the events appended."""
    for attempt in range(ATTEMPTS):
        # After a second conflict the cached view itself is suspect (a cache written from a
        # stream since deleted, say): replay the stream rather than trust it.
        view = projections.app(app) if attempt < 2 else projections.rebuild(app)
        events = list(decide(view))
        if not events:
            return view, []
        try:
            projections.store.append(app, events, expected_version=view.version)
            return view, events
        except ConcurrencyError:
            continue
    raise ConcurrencyError(f"app {app!r}: gave up after {ATTEMPTS} conflicting appends")
