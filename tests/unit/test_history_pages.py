"""Pages of an app's deployments, newest first (core/history_pages.py), on the in-memory store
keeping a tail of 10 events and archiving the rest, as the Redis one does."""
from __future__ import annotations

import pytest

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.core.errors import NotFound
from orchestrator.core.event_archive import EventArchive
from orchestrator.core.history_pages import DEFAULT, newest
from orchestrator.core.memory_store import MemoryEventStore, MemoryViewCache
from orchestrator.core.projections import RECENT, Projections


@pytest.fixture
def projections(tmp_path) -> Projections:
    cache = MemoryViewCache()
    store = MemoryEventStore(EventArchive(tmp_path / "archive"), cache, keep=10)
    projections = Projections(store, cache)
    for n in range(RECENT + 30):
        dep = f"d{n:03d}"
        ended = ev.DeploymentFailed(app="a", at=n, deployment_id=dep, reason="no") if n % 3 else \
            ev.DeploymentSucceeded(app="a", at=n, deployment_id=dep, snapshot=f"s{n}", release=f"/r/{dep}")
        execute(projections, "a", lambda view, dep=dep, ended=ended: [
            ev.DeploymentQueued(app="a", at=n, deployment_id=dep, revision=dep, trigger="poll"),
            ev.DeploymentStarted(app="a", at=n, deployment_id=dep, worker="w"), ended])
    return projections


def everything() -> list[str]:
    return [f"d{n:03d}" for n in range(RECENT + 30 - 1, -1, -1)]


def test_the_first_page_is_the_newest_deployments_newest_first(projections):
    page = newest(projections, "a")

    assert [d.id for d in page.deployments] == everything()[:DEFAULT]
    assert page.view.active_deployment == "d078"


def test_pages_before_the_last_one_seen_reach_back_to_the_first_deployment(projections):
    seen: list[str] = []
    while page := newest(projections, "a", limit=13, before=seen[-1] if seen else None).deployments:
        seen += [d.id for d in page]

    assert seen == everything()
    old = newest(projections, "a", limit=2, before="d001").deployments
    assert [(d.id, d.status, d.release) for d in old] == [("d000", "success", "/r/d000")]


def test_every_deployment_without_a_limit(projections):
    assert [d.id for d in newest(projections, "a", limit=None).deployments] == everything()
    assert [d.id for d in newest(projections, "a", limit=None, before="d002").deployments] == ["d001", "d000"]


def test_a_page_before_a_deployment_the_app_never_had_is_not_found(projections):
    with pytest.raises(NotFound, match="app 'a' has no deployment 'nope'"):
        newest(projections, "a", limit=5, before="nope")
