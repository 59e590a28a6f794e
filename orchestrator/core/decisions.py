"""Run a decision against an app's current view and append its events, optimistically.

A decision is a pure function of the app's view: `decide(view)` returns the events to
append (or none), and with `execute_with_outcome` also what it decided, for the caller to
act on (enqueue, report). If another writer appended first, the view is reloaded and the
decision made again, so every decision is made on fresh state.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from orchestrator.core.errors import ConcurrencyError
from orchestrator.core.events import Event
from orchestrator.core.projections import AppView, Projections

ATTEMPTS = 20
Outcome = TypeVar("Outcome")


def execute(projections: Projections, app: str,
            decide: Callable[[AppView], Sequence[Event]]) -> tuple[AppView, list[Event]]:
    """Returns the view the decision was made on and the events appended."""
    view, events, _ = execute_with_outcome(projections, app, lambda v: (decide(v), None))
    return view, events


def execute_with_outcome(
        projections: Projections, app: str,
        decide: Callable[[AppView], tuple[Sequence[Event], Outcome]],
) -> tuple[AppView, list[Event], Outcome]:
    """Returns the view the decision was made on, the events appended and the outcome."""
    for attempt in range(ATTEMPTS):
        # After a second conflict the cached view itself is suspect (a cache written from a
        # stream since deleted, say): replay the stream rather than trust it.
        view = projections.app(app) if attempt < 2 else projections.rebuild(app)
        decided, outcome = decide(view)
        events = list(decided)
        if not events:
            return view, [], outcome
        try:
            projections.store.append(app, events, expected_version=view.version)
            return view, events, outcome
        except ConcurrencyError:
            continue
    raise ConcurrencyError(f"app {app!r}: gave up after {ATTEMPTS} conflicting appends")
