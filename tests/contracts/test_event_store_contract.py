"""One contract, every event store: the Redis one (on the session's real redis-server) and
the in-memory one the unit tests decide on. A behaviour both must keep is tested here, once."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute
from orchestrator.core.errors import ConcurrencyError
from orchestrator.core.event_log import ANY_VERSION, EventLog
from orchestrator.core.event_store import EventStore
from orchestrator.core.memory_store import MemoryEventStore, MemoryViewCache
from orchestrator.core.projections import Projections, ViewCache


@dataclass
class Backend:
    store: EventLog
    cache: ViewCache


@pytest.fixture(params=["redis", "memory"])
def backend(request) -> Backend:
    if request.param == "redis":
        client = request.getfixturevalue("clean_redis")
        return Backend(EventStore(client), client)
    return Backend(MemoryEventStore(), MemoryViewCache())


@pytest.fixture
def store(backend: Backend) -> EventLog:
    return backend.store


@pytest.fixture
def projections(backend: Backend) -> Projections:
    return Projections(backend.store, backend.cache)


def change(app: str, revision: str) -> ev.ChangeDetected:
    return ev.ChangeDetected(app=app, at=1.0, revision=revision, trigger="manual")


def test_appends_return_the_new_version_and_read_returns_events_in_order(store):
    assert store.append("a", [change("a", "r1"), change("a", "r2")], expected_version=0) == 2
    assert store.append("a", [change("a", "r3")], expected_version=2) == 3

    recorded = store.read("a")

    assert [r.version for r in recorded] == [1, 2, 3]
    assert [r.event.revision for r in recorded] == ["r1", "r2", "r3"]
    assert store.read("a", after_id=recorded[0].id)[0].version == 2
    assert store.apps() == ["a"]


def test_reading_after_the_last_entry_or_an_unknown_app_gives_nothing(store):
    store.append("a", [change("a", "r1")], expected_version=0)

    assert store.read("a", after_id=store.read("a")[-1].id) == []
    assert store.read("nobody") == [] and store.version("nobody") == 0


def test_events_read_back_equal_the_events_appended(store):
    appended = [change("a", "r1"),
                ev.SnapshotBuilt(app="a", at=2.5, deployment_id="d1", snapshot="s", files=3, bytes=9,
                                 blobs_added=1, blobs_reused=2, incremental=True, seconds=0.25),
                ev.ReleasesPruned(app="a", at=3.0, releases=["x", "y"])]
    store.append("a", appended, expected_version=0)

    assert [r.event for r in store.read("a")] == appended
    assert [r.event.type for r in store.read("a")] == ["ChangeDetected", "SnapshotBuilt", "ReleasesPruned"]


def test_an_append_with_a_stale_expected_version_is_rejected_and_writes_nothing(store):
    store.append("a", [change("a", "r1")], expected_version=0)

    with pytest.raises(ConcurrencyError, match="expected version 0, stream is at 1"):
        store.append("a", [change("a", "r2"), change("a", "r3")], expected_version=0)

    assert store.version("a") == 1


def test_an_append_at_any_version_never_conflicts(store):
    store.append("a", [change("a", "r1")], expected_version=0)

    assert store.append("a", [change("a", "r2")], expected_version=ANY_VERSION) == 2


def test_of_many_writers_holding_the_same_version_exactly_one_wins(store):
    barrier = threading.Barrier(8)
    outcomes = []

    def writer(n: int):
        barrier.wait()
        try:
            store.append("a", [change("a", f"r{n}")], expected_version=0)
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
    assert store.version("a") == 1


def test_commands_that_conflict_reload_and_retry_so_no_decision_is_lost(store, projections):
    def add_one(n: int):
        execute(projections, "a", lambda view: [change("a", f"r{n}")])

    threads = [threading.Thread(target=add_one, args=(n,)) for n in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    assert sorted(r.event.revision for r in store.read("a")) == sorted(f"r{n}" for n in range(10))


def test_every_event_is_mirrored_to_the_feed_with_its_app(store):
    start = store.feed_last_id()
    store.append("a", [change("a", "r1")], expected_version=0)
    store.append("b", [change("b", "r9")], expected_version=0)

    follower = store.follow(after_id=start, block_ms=100)
    seen = [next(follower), next(follower)]

    assert [(r.event.app, r.event.revision, r.version) for r in seen] == [("a", "r1", 1), ("b", "r9", 1)]


def test_following_one_app_skips_the_others_and_an_idle_wait_yields_none(store):
    start = store.feed_last_id()
    store.append("a", [change("a", "r1")], expected_version=0)
    store.append("b", [change("b", "r9")], expected_version=0)

    follower = store.follow(after_id=start, block_ms=50, app="b")

    assert next(follower).event.revision == "r9"
    assert next(follower) is None


def test_following_from_now_sees_only_events_appended_later(store):
    store.append("a", [change("a", "before")], expected_version=0)
    follower = store.follow(block_ms=5000)
    appender = threading.Timer(0.5, lambda: store.append("a", [change("a", "after")], ANY_VERSION))
    appender.start()

    seen = next(follower)
    appender.join()

    assert seen is not None and seen.event.revision == "after"


def test_a_cached_view_that_disagrees_with_its_stream_heals_on_the_next_command(backend, projections):
    store = backend.store
    store.append("a", [change("a", f"r{n}") for n in range(5)], expected_version=0)
    stale = projections.app("a")
    stale.version, stale.last_id = 3, "9999999999999-0"   # disagrees with the stream
    backend.cache.set(keys.app_projection("a"), stale.to_json())

    view, appended = execute(projections, "a", lambda v: [change("a", "after")])

    assert appended and store.version("a") == 6
    assert projections.rebuild("a").last_revision == "after"
