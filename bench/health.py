"""After the switch (issue 15): how long proving a release healthy takes, and how fast a
release that answers 500 is rolled back, through a real `sluice worker`, redis-server, git
and app host (tests/servers/release_host.py: serves the release it pinned, re-pins on
SIGHUP), beside baselines measured in the same run.

    .venv/bin/python bench/health.py [--runs 20] [--rollbacks 10] [--interval 0.05]

The app is activated by SIGHUP to the host; its health probe is GET /health every
--interval, healthy_after 1, a deadline of --deadline (so a revision answering 500 fails
after deadline/interval probes and rolls back: on_failure's default).
(a) --runs good revisions: DeploymentSwitched.at (recorded just before the switch) to
    HealthCheckPassed.at, median and max, beside a bare httpx GET of the same /health URL
    (one client, built before; median of --runs), and where the time goes; also a GET with a
    new httpx.Client each (what a verification paid before deploying/tls.py).
(b) --rollbacks revisions answering 500: from the deciding failed probe's answer (taken as
    HealthCheckFailed.at, stamped right after it, only the probe's log line between) to (1) the target
    symlink pointing at the previous release again and (2) the host answering /health from
    it (X-Release), both seen by a poller process reading the link and GETting /health
    every --poll seconds; target <= 100 ms plus one probe interval. Beside: the same switch
    back and SIGHUP done bare by this script (materialise.switch, os.kill) and seen by the
    same poller: the floor of the mechanism. Also HealthCheckFailed -> RevisionRejected ->
    DeploymentRolledBack -> DeploymentFailed, medians.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from common import ROOT, git, make_repo, ms, results_table, sluice_running, verdict, wait
from rich.console import Console

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.projections import DeploymentView
from orchestrator.deploying.sync import sync_now
from orchestrator.releases.materialise import switch

sys.path.insert(0, str(ROOT))
from tests.servers.release_host import ReleaseHost  # noqa: E402

APP, ROLLBACK_BUDGET = "web", 0.100
console = Console(width=150)
E = TypeVar("E", bound=ev.Event)


class Bench:
    """One app on one repository, a worker, and the host that serves its target."""

    def __init__(self, base: Path, interval: float, deadline: float):
        self.base, self.repo, self.target = base, base / "repo", base / "sites" / APP
        self.interval, self.deadline, self.commits = interval, deadline, 0
        make_repo(self.repo, {"version": b"v0"})
        self.host = ReleaseHost(self.target, base / "host")
        self.client = httpx.Client(timeout=10)     # built once: each new client loads CA certificates

    @contextmanager
    def running(self) -> Iterator[Bench]:
        with self.host, sluice_running(self.base, {APP: self._app()}) as services:
            self.services = services
            yield self

    def _app(self) -> dict:
        return {"layout": "site", "target": str(self.target),
                "source": {"type": "git", "url": str(self.repo), "branch": "master", "poll_interval": "1h"},
                "activate": [{"signal": {"pidfile": str(self.host.pidfile), "signal": "HUP"}}],
                "health": {"url": f"{self.health_url}", "interval": self.interval, "healthy_after": 1,
                           "deadline": self.deadline}}

    @property
    def health_url(self) -> str:
        return f"{self.host.url}/health"

    def commit(self, files: dict[str, str]) -> None:
        self.commits += 1
        for name, text in files.items():
            (self.repo / name).write_text(text)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "--quiet", "-m", f"change {self.commits}")

    def deploy(self, expect: str) -> DeploymentView:
        queued = sync_now(self.services, APP).deployment_id
        if queued is None:
            raise SystemExit("nothing to deploy (the head is live already)")
        d = self.until(lambda: self._ended(queued), f"deployment {queued}")
        # its worker records the end, then prunes and lets go of the app: not in the next run
        self.until(lambda: not self.services.redis.exists(keys.lease(APP)), "the lease")
        if d.status != expect:
            raise SystemExit(f"deployment {d.id} {d.status} (expected {expect}): {d.message}")
        return d

    def _ended(self, deployment_id: str) -> DeploymentView | None:
        d = self.services.projections.app(APP).deployments.get(deployment_id)
        return d if d and d.terminal else None

    def event(self, deployment_id: str, kind: type[E]) -> E:
        found = [r.event for r in self.services.store.read(APP)
                 if isinstance(r.event, kind) and getattr(r.event, "deployment_id", None) == deployment_id]
        if not found:
            raise SystemExit(f"deployment {deployment_id} recorded no {kind.__name__}")
        return found[0]

    def serving(self) -> str:
        return self.client.get(self.health_url).headers["X-Release"]

    @staticmethod
    def until(predicate, what: str, timeout: float = 120):
        return wait(predicate, 0.05, timeout, what)


# --- the poller: its own process, so the bench's reads of Redis do not delay it --------------

# When the link was read, the name of the release it pointed at, when /health answered, the
# X-Release and status of that answer (time.time(): the worker's events have the same clock).
Sample = tuple[float, str, float, str, int]


class Poller:
    """Reads the target's link and GETs /health every `every` seconds until stopped."""

    def __init__(self, target: Path, url: str, every: float):
        forked = multiprocessing.get_context("fork")
        self.done, self.results, ready = forked.Event(), forked.Queue(), forked.Event()
        self.proc = forked.Process(target=_poll, args=(target, url, every, self.done, ready, self.results))
        self.proc.start()
        ready.wait(30)

    def stop(self) -> list[Sample]:
        self.done.set()
        samples = self.results.get(timeout=60)
        self.proc.join()
        return samples


def _poll(target: Path, url: str, every: float, done, ready, results) -> None:
    samples: list[Sample] = []
    with httpx.Client(timeout=5) as client:
        while not done.is_set():
            read_at = time.time()
            link = os.path.basename(os.readlink(target)) if os.path.islink(target) else ""
            answer = client.get(url)
            samples.append((read_at, link, time.time(), answer.headers["X-Release"], answer.status_code))
            ready.set()     # one sample taken: what is measured starts after it
            time.sleep(every)
    results.put(samples)


def back_at(samples: list[Sample], away: str, home: str) -> tuple[float, float] | None:
    """When the link, and then the host's answers, showed `home` again after showing `away`;
    None if the poller did not see both (it was not scheduled for that long)."""
    def first(index: int) -> float | None:
        left = False
        for sample in samples:
            left = left or sample[index] == away
            if left and sample[index] == home:
                return sample[index - 1]
        return None
    link, host = first(1), first(3)
    return None if link is None or host is None else (link, host)


def widest_gap(samples: list[Sample]) -> float:
    """The poller's resolution: the longest time between two of its answers."""
    return max((b[2] - a[2] for a, b in zip(samples, samples[1:], strict=False)), default=0.0)


# --- the measures ------------------------------------------------------------------------------

def verified(bench: Bench, runs: int) -> list[tuple[str, ...]]:
    """(a): good revisions, switch to verified, beside the probe's own latency."""
    took: list[float] = []
    parts: dict[str, list[float]] = {"switched -> activated": [], "activated -> probing": [],
                                     "probing -> verified": []}
    probes = []
    for _ in range(runs):
        bench.commit({"version": f"v{bench.commits + 1}"})
        d = bench.deploy("success")
        if (serving := bench.serving()) != d.id:
            raise SystemExit(f"deployment {d.id} verified, but the host serves {serving}")
        at = [bench.event(d.id, kind).at for kind in
              (ev.DeploymentSwitched, ev.DeploymentActivated, ev.HealthCheckStarted, ev.HealthCheckPassed)]
        took.append(at[3] - at[0])
        for name, begin, end in zip(parts, at, at[1:], strict=False):
            parts[name].append(end - begin)
        probes.append((bench.event(d.id, ev.HealthCheckPassed).latency_ms or {}).get("p50", 0.0) / 1000)
    bare = [bare_get(bench.health_url, bench.client) for _ in range(runs)]
    fresh = [bare_get(bench.health_url, None) for _ in range(runs)]
    rows = [(f"switch -> verified (healthy_after 1, n={runs})", figure(took),
             f"bare GET /health: {figure(bare)}",
             f"{statistics.median(took) / statistics.median(bare):.0f}x")]
    rows += [(f"  {name}", ms(statistics.median(values)), "", "") for name, values in parts.items()]
    return rows + [("  the probe's round trip, as the worker timed it", figure(probes), "", ""),
                   ("a new httpx.Client + GET /health", figure(fresh), f"bare GET /health: {figure(bare)}",
                    f"{statistics.median(fresh) / statistics.median(bare):.0f}x")]


def bare_get(url: str, client: httpx.Client | None) -> float:
    """One GET's round trip; with no client, a new one's making included (as a verification has)."""
    started = time.monotonic()
    if client is not None:
        client.get(url)
        return time.monotonic() - started
    with httpx.Client(follow_redirects=False) as new:
        new.get(url)
    return time.monotonic() - started


def figure(values: list[float]) -> str:
    return f"{ms(statistics.median(values))} (max {ms(max(values))})" if values else "none"


@dataclass
class Rollbacks:
    """(b)'s figures, each a list of seconds."""
    to_link: list[float] = field(default_factory=list)
    to_host: list[float] = field(default_factory=list)
    gaps: dict[str, list[float]] = field(default_factory=dict)
    resolution: list[float] = field(default_factory=list)  # the poller's widest gap, each run
    missed: int = 0     # runs where the poller did not see the way there and back

    def add(self, samples: list[Sample], away: str, home: str, since: float) -> None:
        self.resolution.append(widest_gap(samples))
        if (seen := back_at(samples, away, home)) is None:
            self.missed += 1
            return
        self.to_link.append(seen[0] - since)
        self.to_host.append(seen[1] - since)


def rolled_back(bench: Bench, runs: int, every: float) -> tuple[Rollbacks, Path]:
    """(b): revisions answering 500, from the deciding probe to the previous release live;
    also the last broken release (for the baseline)."""
    live, found = bench.serving(), Rollbacks()
    names = ("HealthCheckFailed", "RevisionRejected", "DeploymentRolledBack", "DeploymentFailed")
    found.gaps = {f"{a} -> {b}": [] for a, b in zip(names, names[1:])}
    for n in range(runs):
        bench.commit({"version": f"broken {n}", "status": "500"})
        poller = Poller(bench.target, bench.health_url, every)
        try:
            d = bench.deploy("failed")
        finally:
            samples = poller.stop()
        at = [bench.event(d.id, getattr(ev, name)).at for name in names]
        found.add(samples, d.id, live, at[0])
        for gap, begin, end in zip(found.gaps, at, at[1:], strict=False):
            found.gaps[gap].append(end - begin)
    return found, Path(bench.event(d.id, ev.DeploymentSwitched).release)


def bare_switch_back(bench: Bench, broken: Path, runs: int, every: float) -> Rollbacks:
    """The floor: the same switch back and SIGHUP, done here with nothing recorded."""
    home, found = Path(os.readlink(bench.target)), Rollbacks()
    if not broken.is_dir():
        return found        # pruned: no baseline
    for _ in range(runs):
        switch(bench.target, broken)
        _reload_and_wait(bench, broken.name)
        poller = Poller(bench.target, bench.health_url, every)
        try:
            began = time.time()
            switch(bench.target, home)
            os.kill(bench.host.pid or 0, signal.SIGHUP)
            time.sleep(0.2)     # idle: polling here too would slow the poller
        finally:
            samples = poller.stop()
        found.add(samples, broken.name, home.name, began)
    return found


def rollback_rows(got: Rollbacks, bare: Rollbacks, target: float) -> list[tuple[str, ...]]:
    n = len(got.to_link)
    rows = [(f"deciding probe -> link back (n={n})", figure(got.to_link),
             f"bare switch: {figure(bare.to_link)}", f"<= {ms(target)}",
             verdict(bool(got.to_link) and max(got.to_link) <= target)),
            (f"deciding probe -> host answers from it (n={n})", figure(got.to_host),
             f"bare switch + SIGHUP: {figure(bare.to_host)}", f"<= {ms(target)}",
             verdict(bool(got.to_host) and max(got.to_host) <= target))]
    rows += [(f"  {gap}", ms(statistics.median(values)), "", "", "") for gap, values in got.gaps.items()]
    return rows + [("poller's widest gap between two answers", figure(got.resolution), figure(bare.resolution),
                    "", ""),
                   ("runs the poller missed (not counted above)", str(got.missed), str(bare.missed), "", "")]


def _reload_and_wait(bench: Bench, release: str) -> None:
    bench.host.reload()
    wait(lambda: bench.serving() == release, 0.001, 10, f"the host to serve {release}")


def figures(args: argparse.Namespace, base: Path) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    bench = Bench(base, args.interval, args.deadline)
    with bench.running():
        bench.deploy("success")     # the worker's first task: its imports and connections
        a = verified(bench, args.runs)
        got, broken = rolled_back(bench, args.rollbacks, args.poll)
        bare = bare_switch_back(bench, broken, args.rollbacks, args.poll)
    return a, rollback_rows(got, bare, ROLLBACK_BUDGET + args.interval)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rollbacks", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.05, help="the health probe's interval (s)")
    parser.add_argument("--deadline", type=float, default=0.3, help="the health probe's deadline (s)")
    parser.add_argument("--poll", type=float, default=0.001, help="the poller's sleep between samples (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-health-") as tmp:
        a, b = figures(args, Path(tmp))
    probe = f"GET /health every {ms(args.interval)}, healthy_after 1, deadline {args.deadline:g} s, activate: SIGHUP"
    console.print(results_table(f"(a) Switch to verified ({probe})",
                                ("measure", "figure", "baseline", "ratio"), a))
    console.print(results_table(
        f"(b) A revision answering 500 rolled back ({probe}; poller sleeping {ms(args.poll)} between samples)",
        ("measure", "figure", "baseline", "target", "verdict"), b))


if __name__ == "__main__":
    main()
