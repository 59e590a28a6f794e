"""One contract for a store that keeps a tail of each app's stream and archives the rest
(core/stream_tail.py, core/event_archive.py): the Redis store and the in-memory one."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.core.errors import ArchiveCorrupt, ConcurrencyError
from orchestrator.core.event_archive import EventArchive
from orchestrator.core.event_log import ANY_VERSION, EventLog
from orchestrator.core.event_store import EventStore
from orchestrator.core.memory_store import MemoryEventStore, MemoryViewCache
from orchestrator.core.projections import Projections

KEEP = 10


@dataclass
class Tailed:
    store: EventLog
    projections: Projections
    archive: Path

    def archived(self, app: str = "a") -> list[str]:
        """Every archived line of the app, oldest file first."""
        files = sorted((self.archive / app).glob("*.jsonl"), key=lambda p: int(p.name.split("-")[0]))
        return [line for f in files for line in f.read_text().splitlines()]


@pytest.fixture(params=["redis", "memory"])
def tailed(request, tmp_path) -> Tailed:
    archive = EventArchive(tmp_path / "archive")
    if request.param == "redis":
        client = request.getfixturevalue("clean_redis")
        store: EventLog = EventStore(client, archive, keep=KEEP)
        return Tailed(store, Projections(store, client), tmp_path / "archive")
    cache = MemoryViewCache()
    store = MemoryEventStore(archive, cache, keep=KEEP)
    return Tailed(store, Projections(store, cache), tmp_path / "archive")


def change(revision: str) -> ev.ChangeDetected:
    return ev.ChangeDetected(app="a", at=1.0, revision=revision, trigger="manual")


def deployment(n: int, end: bool = True) -> list[ev.Event]:
    dep = f"d{n}"
    events: list[ev.Event] = [
        ev.DeploymentQueued(app="a", at=n, deployment_id=dep, revision=f"r{n}", trigger="poll"),
        ev.DeploymentStarted(app="a", at=n, deployment_id=dep, worker="w")]
    if end:
        events.append(ev.DeploymentSucceeded(app="a", at=n, deployment_id=dep, snapshot=f"s{n}",
                                             release=f"/r/{dep}"))
    return events


def decide(tailed: Tailed, events: list[ev.Event]) -> None:
    """As commands append: on the cached view, which they keep caught up."""
    execute(tailed.projections, "a", lambda view: events)


def test_a_store_keeping_a_tail_still_reads_the_whole_history_in_order(tailed):
    for n in range(100):
        decide(tailed, [change(f"r{n}")])

    recorded = tailed.store.read("a")

    assert len(tailed.archived()) >= 100 - 2 * KEEP, "the oldest events went to the archive"
    assert [r.version for r in recorded] == list(range(1, 101))
    assert [r.event.revision for r in recorded] == [f"r{n}" for n in range(100)]
    assert [r.version for r in tailed.store.read("a", after_id=recorded[4].id)] == list(range(6, 101))
    assert [r.version for r in tailed.store.read("a", after_id=recorded[-2].id)] == [100]
    assert [r.version for r in tailed.store.read_backwards("a")] == list(range(100, 0, -1))
    assert tailed.store.version("a") == 100


def test_after_trimming_appends_still_check_the_version(tailed):
    for n in range(40):
        decide(tailed, [change(f"r{n}")])

    with pytest.raises(ConcurrencyError, match="expected version 39, stream is at 40"):
        tailed.store.append("a", [change("late")], expected_version=39)
    assert tailed.store.append("a", [change("next")], expected_version=40) == 41
    assert tailed.store.append("a", [change("any")], expected_version=ANY_VERSION) == 42


def test_trimming_never_loses_an_event_while_writers_race(tailed):
    def writer(w: int):
        for n in range(15):
            decide(tailed, [change(f"w{w}-{n}")])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    recorded = tailed.store.read("a")
    assert [r.version for r in recorded] == list(range(1, 61))
    assert sorted(r.event.revision for r in recorded) == sorted(f"w{w}-{n}" for w in range(4) for n in range(15))
    assert tailed.archived(), "the stream was trimmed meanwhile"


def test_a_running_deployments_events_and_those_after_the_cached_view_stay_in_the_store(tailed):
    decide(tailed, deployment(0, end=False))
    for n in range(1, 30):
        decide(tailed, deployment(n))
    for n in range(30):     # appended without the view catching up
        tailed.store.append("a", [change(f"unseen{n}")], ANY_VERSION)

    archived = "\n".join(tailed.archived())
    assert '\\"deployment_id\\": \\"d0\\"' not in archived and "unseen" not in archived
    assert len(tailed.store.read("a")) == 3 * 30 - 1 + 30


def test_a_changed_archived_event_is_reported_naming_its_file_and_line(tailed):
    for n in range(40):
        decide(tailed, [change(f"r{n}")])
    first = min((tailed.archive / "a").glob("*.jsonl"), key=lambda p: int(p.name.split("-")[0]))
    lines = first.read_text().splitlines()
    lines[1] = lines[1].replace('\\"r1\\"', '\\"forged\\"')
    first.write_text("\n".join(lines) + "\n")

    with pytest.raises(ArchiveCorrupt, match=rf"{first}:2: checksum mismatch"):
        tailed.store.read("a")


def test_a_replay_from_scratch_equals_the_incremental_view_after_trimming(tailed):
    for n in range(60):
        decide(tailed, deployment(n, end=n % 7 != 3))
    incremental = tailed.projections.app("a")

    assert tailed.archived(), "the stream was trimmed"
    assert tailed.projections.rebuild("a").to_json() == incremental.to_json()
    history = tailed.projections.history("a")
    assert [d.id for d in history.history()] == [f"d{n}" for n in range(59, -1, -1)]
