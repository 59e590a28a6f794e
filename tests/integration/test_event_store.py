"""The event store on a real redis-server: versions, conflicts, feed, replay."""
from __future__ import annotations

import threading

import pytest

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.core.errors import ConcurrencyError
from orchestrator.core.event_store import EventStore
from orchestrator.core.projections import Projections, replay
from tests.helpers import FUNCTION_APP
from tests.integration.flow import sync_and_wait


@pytest.fixture
def store(clean_redis):
    return EventStore(clean_redis)


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


def test_an_append_with_a_stale_expected_version_is_rejected_and_writes_nothing(store):
    store.append("a", [change("a", "r1")], expected_version=0)

    with pytest.raises(ConcurrencyError, match="expected version 0, stream is at 1"):
        store.append("a", [change("a", "r2"), change("a", "r3")], expected_version=0)

    assert store.version("a") == 1


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


def test_commands_that_conflict_reload_and_retry_so_no_decision_is_lost(store):
    projections = Projections(store)

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


def test_replaying_the_streams_rebuilds_the_same_projections(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    repo.commit({"HttpHello/function.json": "broken"})
    sync_and_wait(services, "hello")
    sync_and_wait(services, "hello")
    cached = services.projections.app("hello")

    rebuilt = services.projections.rebuild("hello")

    assert rebuilt == cached and rebuilt.history() == cached.history()
    replayed = replay("hello", services.store.read("hello"))
    assert replayed == cached and replayed.history() == cached.history()
    assert [d.status for d in rebuilt.history()] == ["failed", "failed", "success"]


def test_a_cached_view_that_disagrees_with_its_stream_heals_on_the_next_command(store):
    projections = Projections(store)
    store.append("a", [change("a", f"r{n}") for n in range(5)], expected_version=0)
    stale = projections.app("a")
    stale.version, stale.last_id = 3, "9999999999999-0"   # disagrees with the stream
    store.redis.set("sluice:proj:app:a", stale.to_json())

    view, appended = execute(projections, "a", lambda v: [change("a", "after")])

    assert appended and store.version("a") == 6
    assert projections.rebuild("a").last_revision == "after"
