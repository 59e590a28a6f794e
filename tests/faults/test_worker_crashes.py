"""kill -9 of the worker at random instants, while a reader watches the live site.

Every commit is self-describing: each file of the versioned part says the version it belongs
to and how many versioned files that version has, and commits add and delete files, so any
sample of the live tree can be checked as "a complete release of one committed version".
"""
from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.core import keys
from orchestrator.deploying.dispatch import request_deployment
from tests.helpers import git_app, wait_for
from tests.integration.flow import sync_and_wait, tree, wait_until_ended

APP = "crashy"
DEPLOYMENTS = 54
STATIC_FILES = 600          # never change; they make the release's hardlinked copy take a while
# Every versioned file changes in every commit: a few hundred of them make each deployment
# take long enough for kills to land in each of its phases.
NAMES = [f"v/{i % 7}/f{i:03d}.txt" for i in range(340)]
START = 300
STATIC = {f"static/s{i:03d}.txt": f"static {i}\n" for i in range(STATIC_FILES)}
VISIBILITY_TIMEOUT = 3.0
PHASES = {None: "before start", "DeploymentQueued": "before start",
          "DeploymentRetrying": "before start", "DeploymentStarted": "fetch/snapshot",
          "SnapshotBuilt": "materialise/switch", "DeploymentSwitched": "materialise/switch"}
# What kombu's redis transport holds while it restores unacked messages (once a second here);
# a worker killed inside that moment leaves it behind for unacked_mutex_expire (300 s).
KOMBU_RESTORE_MUTEX = "unacked_mutex"
# The signature of an interrupted `git fetch` that left a commit without its tree.
TORN_FETCH = "unable to read tree"


def versioned_files(version: int, names: set[str], wide: bool) -> dict[str, str]:
    """Narrow: every file the same content (one new blob, so git fetches a handful of loose
    objects). Wide: each file's content also names the file (hundreds of new blobs)."""
    return {name: f"version {version}\ncount {len(names)}\n" + (f"file {name}\n" if wide else "")
            for name in names}


class Sampler(threading.Thread):
    """Reads the live site over and over: resolve the symlink once, list, read every file."""

    def __init__(self, target: Path, expected: dict[int, set[str]]):
        super().__init__(daemon=True)
        self.target, self.expected = target, expected
        self.stop = threading.Event()
        self.samples = 0
        self.versions_seen: Counter[int] = Counter()
        self.problems: list[str] = []
        self.last_version = 0

    def run(self) -> None:
        while not self.stop.is_set() and len(self.problems) < 20:
            if not os.path.islink(self.target):
                time.sleep(0.001)
                continue
            release = os.path.realpath(self.target)
            try:
                version, problem = self.check(release)
            except OSError as exc:
                version, problem = None, f"unreadable: {exc}"
            if problem:
                self.problems.append(f"{release}: {problem}")
                continue
            if version < self.last_version:
                self.problems.append(f"{release}: live version went back from "
                                     f"{self.last_version} to {version}")
            self.last_version = version
            self.samples += 1
            self.versions_seen[version] += 1

    def check(self, release: str) -> tuple[int | None, str | None]:
        """(version, None) for a complete release of a committed version, else (None, why)."""
        contents = {}
        for folder, _, files in os.walk(release):
            for name in files:
                path = os.path.join(folder, name)
                with open(path) as f:
                    contents[os.path.relpath(path, release)] = f.read()
        static = {p: c for p, c in contents.items() if p.startswith("static/")}
        if static != STATIC:
            return None, f"static part differs ({len(static)} of {len(STATIC)} files)"
        versioned = {p: c.split("\n") for p, c in contents.items() if not p.startswith("static/")}
        kinds = Counter(tuple(lines[:2]) for lines in versioned.values())
        if len(kinds) != 1:
            return None, f"mixed tree: {sorted(kinds.items())}"
        (version_line, count_line), = kinds
        version = int(version_line.split()[1])
        if version not in self.expected:
            return None, f"version {version} was never committed"
        if set(versioned) != self.expected[version]:
            return None, (f"partial tree of version {version}: missing "
                          f"{sorted(self.expected[version] - set(versioned))}, extra "
                          f"{sorted(set(versioned) - self.expected[version])}")
        if count_line != f"count {len(versioned)}":
            return None, f"version {version}: {count_line!r} but {len(versioned)} files"
        misnamed = [p for p, lines in versioned.items() if lines[2] not in ("", f"file {p}")]
        if misnamed:
            return None, f"version {version}: files with another file's content: {misnamed[:5]}"
        return version, None


def story(services, deployment_id: str) -> str:
    return "\n".join(f"  {r.version} {r.event}" for r in services.store.read(APP)
                     if getattr(r.event, "deployment_id", None) == deployment_id)


def phase_of(services, deployment_id: str) -> str:
    """Where the deployment was when the worker died, from the events it had recorded."""
    last = None
    for r in services.store.read(APP):
        if getattr(r.event, "deployment_id", None) == deployment_id:
            last = r.event.type
    return PHASES.get(last, "after the end" if last else "before start")


def recent_phase(services, deployment_id: str) -> str:
    """phase_of from the stream's last few entries only: cheap enough to poll every ms."""
    for _, fields in services.redis.xrevrange(keys.app_events(APP), count=8):
        if json.loads(fields[b"data"]).get("deployment_id") == deployment_id:
            last = fields[b"type"].decode()
            return PHASES.get(last, "after the end")
    return "before start"


def undisturbed(services, skip: set[str]) -> dict[str, list[float]]:
    """Seconds from queued to started (pickup), to snapshot built (fetch and snapshot), to
    succeeded (materialise and switch), and in all, for deployments no kill hit."""
    at: dict[str, dict[str, float]] = {}
    for r in services.store.read(APP):
        d = getattr(r.event, "deployment_id", None)
        if d and d not in skip:
            at.setdefault(d, {}).setdefault(r.event.type, r.event.at)
    steps = [("pickup", "DeploymentQueued", "DeploymentStarted"),
             ("fetch+snapshot", "DeploymentStarted", "SnapshotBuilt"),
             ("materialise+switch", "SnapshotBuilt", "DeploymentSucceeded"),
             ("all", "DeploymentQueued", "DeploymentSucceeded")]
    return {name: [t[b] - t[a] for t in at.values() if a in t and b in t] or [0.3]
            for name, a, b in steps}


def mutate(rng: random.Random, names: set[str]) -> set[str]:
    names = set(names)
    unused = [n for n in NAMES if n not in names]
    roll = rng.random()
    if roll < 0.3 and unused:
        names |= set(rng.sample(unused, min(len(unused), rng.randint(1, 10))))
    elif roll < 0.6 and len(names) > START - 40:
        names -= set(rng.sample(sorted(names), rng.randint(1, 10)))
    return names


@pytest.mark.timeout(600)
def test_a_worker_killed_at_any_instant_never_shows_a_partial_site_and_every_deployment_ends(
        rig_factory):
    seed = int(os.environ.get("SLUICE_FAULT_SEED", time.time()))
    rng = random.Random(seed)
    rig = rig_factory(visibility_timeout=VISIBILITY_TIMEOUT)
    repo = rig.repo()
    names = set(NAMES[:START])
    expected: dict[int, set[str]] = {1: set(names)}
    repo.commit({**STATIC, **versioned_files(1, names, True)}, "version 1")
    services = rig.configure(
        {APP: git_app(repo, rig.target(APP), layout="site", keep_releases=100,
                      retry={"attempts": 5, "base": "200ms", "max": "1s"})},
        lease_ttl="2s", gc_interval="1s")
    worker = rig.start_worker()
    sampler = Sampler(rig.target(APP), expected)
    sampler.start()
    started = time.monotonic()

    queued, delays, phases, killed = [], [], Counter(), set()

    def wait_ended(deployment_id: str, killed_at: float | None = None) -> None:
        deadline = time.monotonic() + 90
        while not services.projections.app(APP).deployments[deployment_id].terminal:
            if time.monotonic() > deadline:
                raise AssertionError(f"deployment {deployment_id} did not end within 90 s; "
                                     f"its events:\n{story(services, deployment_id)}")
            time.sleep(0.02)

    version = 0
    try:
        while version < DEPLOYMENTS:
            burst = 2 if rng.random() < 0.15 else 1    # two changes back to back: supersede
            for _ in range(burst):
                version += 1
                if version > 1:
                    names = mutate(rng, names)
                    expected[version] = set(names)
                    removed = {p: None for p in expected[version - 1] - names}
                    repo.commit({**removed, **versioned_files(version, names, rng.random() < 0.5)},
                                f"version {version}")
                queued.append(request_deployment(services, APP, repo.head(), "manual"))
            last = queued[-1].deployment_id
            if version == 1 or len(killed) * 2 >= len(queued):     # every other deployment
                wait_ended(last)
                continue
            timings = undisturbed(services, killed)
            if rng.random() < 0.3:      # aim at the short materialise+switch phase
                wait_for(lambda: recent_phase(services, last) in ("materialise/switch", "after the end"),
                         timeout=30, interval=0.001, what="a snapshot")
                time.sleep(rng.uniform(0, statistics.median(timings["materialise+switch"])))
            else:                       # up to 300 ms, or most of what a deployment takes
                time.sleep(rng.uniform(0, min(0.3, 0.9 * statistics.median(timings["all"]))))
            worker.kill()
            killed_at = time.monotonic()
            killed.add(last)
            phases[phase_of(services, last)] += 1
            worker = rig.start_worker(wait=False)
            wait_ended(last, killed_at)
            delays.append(time.monotonic() - killed_at)
            worker.wait_ready()         # if it ended before the kill, the next one waits
        for q in queued:            # the first of a burst may come back after the last
            wait_ended(q.deployment_id, time.monotonic())
    finally:
        time.sleep(0.2)
        sampler.stop.set()
        sampler.join(10)
    elapsed = time.monotonic() - started

    view = services.projections.app(APP)
    statuses = Counter(view.deployments[q.deployment_id].status for q in queued)
    succeeded = Counter(r.event.deployment_id for r in services.store.read(APP)
                        if r.event.type == "DeploymentSucceeded")
    failed = {d.id: d.message for d in view.deployments.values() if d.status == "failed"}
    order = [q.deployment_id for q in queued]
    went_live = [order.index(r.event.deployment_id) for r in services.store.read(APP)
                 if r.event.type == "DeploymentSucceeded"]
    regressions = [i for n, i in enumerate(went_live) if i < max(went_live[:n], default=-1)]
    print(f"\nseed {seed}: {len(queued)} deployments in {elapsed:.1f}s, {len(killed)} kills "
          f"(hit: {dict(phases)}), statuses {dict(statuses)}")
    print(f"samples checked: {sampler.samples}, versions seen live: {len(sampler.versions_seen)}")
    print("undisturbed deployments, median/max ms: " + ", ".join(
        f"{name} {statistics.median(v) * 1000:.0f}/{max(v) * 1000:.0f}"
        for name, v in undisturbed(services, killed).items()))
    print(f"kill -> deployment ended: min {min(delays):.2f}s, median "
          f"{statistics.median(delays):.2f}s, max {max(delays):.2f}s")

    assert not sampler.problems, "\n".join(sampler.problems)
    assert sampler.samples > 100
    assert all(view.deployments[q.deployment_id].terminal for q in queued)
    assert failed == {}, failed
    assert max(succeeded.values()) == 1, [d for d, n in succeeded.items() if n > 1]
    assert regressions == [], "an older deployment went live after a newer one"
    assert len(killed) >= 20 and len(phases) >= 3
    assert services.projections.rebuild(APP).deployments == view.deployments
    live = Path(os.path.realpath(rig.target(APP)))
    assert sampler.check(str(live)) == (version, None)
    assert str(live) == view.active.release and view.active.id == queued[-1].deployment_id


# --- the two ways a kill wedged a deployment above, each made to happen every time ---------

def test_a_fetch_killed_after_the_commit_object_arrived_does_not_wedge_that_revision(workspace):
    retry = {"attempts": 3, "base": "100ms", "max": "200ms"}
    repo, services = workspace.app_with({"index.html": "v1\n"}, layout="site", retry=retry)
    repo.through_a_mirror()
    sync_and_wait(services, "hello")
    revision = repo.commit({"index.html": "v2\n"})
    # What `git fetch` leaves when killed during unpack-objects: the commit object only.
    mirror = next((workspace.data_dir / "cache" / "git").glob("*.git"))
    loose = Path(revision[:2], revision[2:])
    (mirror / "objects" / loose.parent).mkdir(exist_ok=True)
    shutil.copyfile(repo.path / ".git" / "objects" / loose, mirror / "objects" / loose)

    d = sync_and_wait(services, "hello")

    assert d.status == "success", d.message
    assert tree(workspace.target("hello")) == {"index.html": "v2\n"}


@pytest.mark.timeout(120)
def test_a_worker_killed_while_restoring_unacked_tasks_does_not_hold_redelivery_for_minutes(
        rig_factory):
    rig = rig_factory(visibility_timeout=VISIBILITY_TIMEOUT)
    repo = rig.repo()
    repo.commit({"index.html": "v1\n", **{f"f{i:03d}.txt": f"{i}\n" for i in range(300)}})
    services = rig.configure({APP: git_app(repo, rig.target(APP), layout="site")},
                             lease_ttl="2s")
    worker = rig.start_worker()
    d = request_deployment(services, APP, repo.head(), "manual").deployment_id
    wait_for(lambda: phase_of(services, d) != "before start", interval=0.002,
             what="the deployment to start")
    worker.kill()
    if phase_of(services, d) == "after the end":
        raise RuntimeError("the deployment ended before the kill; nothing to redeliver")
    # The state a kill inside kombu's restore_visible() leaves: a redis-py Lock with the
    # expiry the Celery configuration gives it (kombu's default when unset: 300 s).
    from orchestrator.deploying.task_queue import create_app
    options = create_app(services.redis_url).conf.broker_transport_options
    services.redis.set(KOMBU_RESTORE_MUTEX, "dead-worker-token",
                       px=int(options.get("unacked_mutex_expire", 300) * 1000))
    killed_at = time.monotonic()
    rig.start_worker()

    view = wait_until_ended(services, APP, d, timeout=VISIBILITY_TIMEOUT + 12)

    print(f"\nredelivered and ended {time.monotonic() - killed_at:.1f}s after the kill")
    assert view.status == "success"


@pytest.mark.timeout(120)
def test_a_deployment_whose_worker_died_does_not_go_live_after_a_newer_one(rig_factory):
    """v2's worker dies mid-deployment; v3 is queued and goes live before v2's task comes
    back from the visibility timeout. v2 must then not replace v3."""
    rig = rig_factory(visibility_timeout=6.0)
    repo = rig.repo()
    big = {f"f{i:03d}.txt": f"{i}\n" for i in range(300)}
    repo.commit({"index.html": "v1\n", **big})
    services = rig.configure({APP: git_app(repo, rig.target(APP), layout="site")},
                             lease_ttl="1s")
    worker = rig.start_worker()
    wait_until_ended(services, APP, request_deployment(services, APP, repo.head(), "manual").deployment_id)

    repo.commit({"index.html": "v2\n", **{p: c + "v2\n" for p, c in big.items()}})
    v2 = request_deployment(services, APP, repo.head(), "manual").deployment_id
    wait_for(lambda: phase_of(services, v2) != "before start", interval=0.002, what="v2 to start")
    worker.kill()
    killed_at = time.monotonic()
    if phase_of(services, v2) == "after the end":
        raise RuntimeError("v2 ended before the kill; nothing to redeliver")
    repo.commit({"index.html": "v3\n"})
    v3 = request_deployment(services, APP, repo.head(), "manual").deployment_id
    time.sleep(1.5)                                 # v2's lease runs out
    rig.start_worker()
    wait_until_ended(services, APP, v3, timeout=30)
    v3_ended = time.monotonic() - killed_at
    wait_until_ended(services, APP, v2, timeout=30)  # its task comes back after 6 s

    view = services.projections.app(APP)
    print(f"\nv3 ended {v3_ended:.1f}s after the kill ({view.deployments[v3].status}); v2 then "
          f"{view.deployments[v2].status} ({view.deployments[v2].message}) after "
          f"{time.monotonic() - killed_at:.1f}s")
    assert view.deployments[v3].status == "success"
    assert (rig.target(APP) / "index.html").read_text() == "v3\n"
    assert view.active.id == v3 and view.deployments[v2].status != "success"
