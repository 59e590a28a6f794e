"""Reading many apps at once (`EventLog.read_many`, `Projections.apps`) gives what reading them
one by one gives, on the Redis store and the in-memory one, archives included."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.event_archive import EventArchive
from orchestrator.core.event_log import ANY_VERSION, EventLog
from orchestrator.core.event_store import EventStore
from orchestrator.core.memory_store import MemoryEventStore, MemoryViewCache
from orchestrator.core.projections import Projections, ViewCache
from orchestrator.core.stream_reads import COUNT

KEEP = 10


@dataclass
class Backend:
    store: EventLog
    cache: ViewCache

    def projections(self) -> Projections:
        return Projections(self.store, self.cache)


@pytest.fixture(params=["redis", "memory"])
def backend(request, tmp_path) -> Backend:
    archive = EventArchive(tmp_path / "archive")
    if request.param == "redis":
        client = request.getfixturevalue("clean_redis")
        return Backend(EventStore(client, archive, keep=KEEP), client)
    cache = MemoryViewCache()
    return Backend(MemoryEventStore(archive, cache, keep=KEEP), cache)


def deployed(store: EventLog, app: str, n: int) -> None:
    dep = f"{app}-d{n}"
    store.append(app, [
        ev.ChangeDetected(app=app, at=n, revision=f"r{n}", trigger="poll"),
        ev.DeploymentQueued(app=app, at=n, deployment_id=dep, revision=f"r{n}", trigger="poll"),
        ev.DeploymentStarted(app=app, at=n, deployment_id=dep, worker="w"),
        ev.DeploymentSucceeded(app=app, at=n, deployment_id=dep, snapshot=f"s{n}", release=f"/r/{dep}"),
    ], ANY_VERSION)


def fleet(backend: Backend) -> list[str]:
    """Apps in every state a fleet view meets: cached and unmoved, cached and moved since, moved
    far beyond its cache, never cached, archived before any cache, and unknown."""
    projections = backend.projections()
    for app in ("still", "moved", "far"):
        deployed(backend.store, app, 1)
        projections.app(app)
    deployed(backend.store, "moved", 2)
    for n in range(2, 30):
        deployed(backend.store, "far", n)
    deployed(backend.store, "uncached", 1)
    for n in range(40):
        deployed(backend.store, "archived", n)
    return ["still", "moved", "far", "uncached", "archived", "unknown"]


def test_many_apps_read_at_once_are_what_each_read_alone_gives(backend):
    names = fleet(backend)
    after = {name: None for name in names} | {"moved": backend.store.read("moved")[0].id}

    assert backend.store.read_many(after) == {name: backend.store.read(name, after[name]) for name in names}


def test_a_stream_with_more_new_events_than_a_read_of_many_takes_is_read_whole(backend):
    backend.store.append("long", [ev.ChangeDetected(app="long", at=1.0, revision=f"r{n}", trigger="poll")
                                  for n in range(COUNT + 3)], ANY_VERSION)

    assert [r.version for r in backend.store.read_many({"long": None})["long"]] == list(range(1, COUNT + 4))


def test_the_views_of_many_apps_are_those_each_app_alone_has(backend):
    names = fleet(backend)

    views = backend.projections().apps(names)

    alone = Projections(backend.store, MemoryViewCache())
    assert views == [alone.app(name) for name in names]
    assert [v.name for v in views] == names and views[-1].version == 0


def test_the_views_that_moved_are_saved_caught_up(backend):
    names = fleet(backend)

    views = backend.projections().apps(names)

    saved = backend.cache.mget([keys.app_projection(n) for n in names])
    assert [bool(s) for s in saved] == [True, True, True, True, True, False], "unknown: nothing saved"
    assert backend.projections().apps(names) == views


def test_the_feed_names_the_apps_appended_to_since_an_id(backend):
    deployed(backend.store, "web", 1)
    seen = backend.store.feed_last_id()
    deployed(backend.store, "api", 1)
    deployed(backend.store, "docs", 1)
    deployed(backend.store, "api", 2)

    moves = backend.store.feed_moves(seen)

    assert moves.last_id == backend.store.feed_last_id() and moves.apps == {"api", "docs"}
    assert backend.store.feed_moves(moves.last_id).apps == frozenset(), "none since the last"


def test_the_feed_cannot_tell_which_apps_moved_after_more_entries_than_asked_for(backend):
    deployed(backend.store, "web", 1)
    seen = backend.store.feed_last_id()
    deployed(backend.store, "web", 2)
    deployed(backend.store, "api", 2)

    assert backend.store.feed_moves(seen, limit=4).apps is None
    assert backend.store.feed_moves(seen, limit=8).apps == {"web", "api"}
