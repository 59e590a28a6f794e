"""Fan-out benchmark (issue 19): an app of 20,000 files rolled out to 4 hosts, beside `rsync -a`
of the same tree to 4 folders, measured in the same run.

    .venv/bin/python bench/fanout.py [--files 20000] [--hosts 4] [--runs 5] [--first-runs 1]

Everything lives in a temp dir removed at the end: a real redis-server, a `sluice worker` (it
builds each snapshot, once), the API served in this process (its store routes count what they
hand out: `served_store.served`), and --hosts `sluice worker --host hN` processes, each with a
data_dir of its own and its target `sites/{host}/APP`; no folder is shared.

The tree is a source tree's shape: 100 files a folder, sizes log-normal (median ~110 bytes,
the largest ~10 KiB) but 0.1 % of 32-256 KiB (images, bundles), ~8 MB in all; 3 % of the
files are copies of a few others (one-line `__init__.py`, licences), so its unique content is
less than its bytes.

1. First rollout (--first-runs, each an app of its own with content of its own: every host
   lacks every blob): what the store routes served (blobs and their bytes; roots and buckets,
   their bytes read from the central store) beside hosts x the tree's bytes and hosts x its
   unique content (target: each blob once per host, <= 1.0x the latter); from queued to every
   host switched, beside `rsync -a` of the tree into hosts empty folders, one after another
   and all at once (medians of 5).
2. One-file changes (--runs, after --warm-up changes so that each host's releases are as
   they stay): per host, the blobs, bytes, roots and buckets served (target: one blob, its
   root and its bucket); queued to every host switched, beside an in-place `rsync -a` of a
   one-file change to hosts folders holding the tree (one after another, and all at once).
Times are split where they go: queued to started, the snapshot (SnapshotBuilt's seconds),
the snapshot to the first and the last host switched, the last to the deployment's end.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import yaml
from common import (
    GIT_ENV,
    ROOT,
    git,
    git_source,
    make_repo,
    ms,
    results_table,
    rsync_fresh,
    rsyncs,
    start_worker,
    verdict,
    wait,
)
from rich.console import Console

sys.path.insert(0, str(ROOT))

from orchestrator.api import create_app  # noqa: E402
from orchestrator.api.host_store import Served  # noqa: E402
from orchestrator.config.settings import load_config  # noqa: E402
from orchestrator.deploying.sync import sync_now  # noqa: E402
from orchestrator.releases.removal import remove_tree  # noqa: E402
from orchestrator.releases.snapshots import SnapshotStore  # noqa: E402
from orchestrator.runtime.embedded_redis import free_port, start_redis  # noqa: E402
from orchestrator.runtime.processes import terminate  # noqa: E402
from orchestrator.runtime.services import Services  # noqa: E402
from tests.integration.host_workers import HostWorker  # noqa: E402
from tests.servers.api_server import serving  # noqa: E402

TOKEN = "bench-worker-token-0123456789"
BASELINE_RUNS = 5
LOOK_EVERY = 0.05       # the API answers hosts in this process: waiting must leave it the GIL
console = Console(width=150)


def rel_path(i: int) -> str:
    return f"pkg{i // 2000:02d}/mod{i // 100 % 20:02d}/f{i % 100:02d}.py"


def app_tree(n: int, seed: int) -> dict[str, bytes]:
    """n files as a source tree holds them: mostly small, a few large, some identical."""
    rnd = random.Random(seed)
    shared = [b"# %d\n" % seed, b"# licence %d\n" % seed * 80, b"__all__ = [%d]\n" % seed]   # of this tree
    files = {}
    for i in range(n):
        kind = rnd.random()
        if kind < 0.03:
            files[rel_path(i)] = rnd.choice(shared)
        elif kind < 0.031:      # images, bundles
            files[rel_path(i)] = rnd.randbytes(rnd.randrange(32 * 1024, 256 * 1024))
        else:
            files[rel_path(i)] = rnd.randbytes(int(rnd.lognormvariate(4.7, 1.3)) + 1)
    return files


@dataclass(frozen=True)
class Tree:
    files: int
    bytes: int
    unique: int             # distinct contents: what a content-addressed store holds of it
    unique_bytes: int


def tree_of(files: dict[str, bytes]) -> Tree:
    distinct = {hashlib.sha256(data).digest(): len(data) for data in files.values()}
    return Tree(len(files), sum(map(len, files.values())), len(distinct), sum(distinct.values()))


@dataclass
class Moved:
    """What the store routes served during one deployment, to all hosts together."""
    blobs: int
    bytes: int
    manifests: int
    buckets: int
    document_bytes: int

    def per_host(self, hosts: int) -> str:
        return (f"{self.blobs / hosts:g} blobs, {self.bytes / hosts:,.0f} B + {self.manifests / hosts:g} root "
                f"+ {self.buckets / hosts:g} buckets, {self.document_bytes / hosts:,.0f} B")


@dataclass
class Timing:
    queued: float       # wall clock
    started: float
    snapshot: float     # SnapshotBuilt's seconds (fetch and seal)
    built: float
    first_host: float
    last_host: float
    ended: float

    def all_live(self) -> float:
        return self.last_host - self.queued


class Fleet:
    """Redis, the central worker, the API in this process and the hosts' workers, all started
    by `fleet_running`."""

    def __init__(self, base: Path, services: Services, api, hosts: list[str]):
        self.base, self.services, self.api, self.hosts = base, services, api, hosts
        self.store = SnapshotStore(base / "data" / "store")

    def deploy(self, app: str) -> tuple[Moved, Timing]:
        """One deployment of the app's head, to every host: what moved, and when."""
        before = _counts(self.api)
        queued = time.time()
        deployment_id = sync_now(self.services, app).deployment_id
        d = wait(lambda: _ended(self.services, app, deployment_id), LOOK_EVERY, 900, deployment_id)
        if d.status != "success":
            raise RuntimeError(f"{app} {d.id}: {d.status}: {d.message}")
        after = _counts(self.api)
        moved = Moved(*(after[k] - before[k] for k in ("blobs", "bytes", "manifests", "buckets")),
                      document_bytes=0)
        events = [r.event for r in self.services.store.read(app) if getattr(r.event, "deployment_id", None) == d.id]
        return moved, _timing(queued, events, d.ended_at)

    def documents(self, snapshot: str, before: str | None) -> tuple[int, int]:
        """(buckets, bytes of the root and those buckets) a host lacking `before`'s buckets
        (all of them with no `before`) fetches for `snapshot`."""
        def buckets(s: str) -> list[str]:
            return orjson.loads((self.store.manifests / f"{s}.json").read_bytes())["buckets"]
        new = set(buckets(snapshot)) - (set(buckets(before)) if before else set())
        size = (self.store.manifests / f"{snapshot}.json").stat().st_size
        return len(new), size + sum((self.store.buckets / f"{b}.json").stat().st_size for b in new)

    def snapshot_of(self, app: str) -> str:
        active = self.services.projections.app(app).active
        assert active is not None and active.snapshot
        return active.snapshot


@contextmanager
def fleet_running(base: Path, apps: dict[str, Path], hosts: list[str]) -> Iterator[Fleet]:
    """The apps (name: repository) on `hosts`; everything stopped at the end."""
    with ExitStack() as stack:
        redis_proc, redis_url = start_redis(base / "redis")
        stack.callback(terminate, redis_proc)
        port = free_port()
        cfg = base / "sluice.yaml"
        cfg.write_text(yaml.safe_dump({
            "data_dir": str(base / "data"), "redis_url": redis_url,
            "api": {"worker_token": TOKEN}, "worker": {"store_url": f"http://127.0.0.1:{port}"},
            "apps": {name: {"layout": "site", "target": str(base / "sites" / "{host}" / name), "hosts": hosts,
                            "source": git_source(repo, "1h")} for name, repo in apps.items()}}))
        services = Services.build(load_config(cfg, {**os.environ, **GIT_ENV}))
        api = create_app(services)
        stack.enter_context(serving(services, api, port=port))
        stack.callback(terminate, start_worker(cfg, redis_url, base / "worker.log"))
        for host in hosts:
            stack.callback(HostWorker(host, base, cfg, redis_url).start().stop)
        yield Fleet(base, services, api, hosts)


def _counts(api) -> dict[str, int]:
    served = getattr(api.state, "served_store", None)
    s = served.served if served is not None else Served()
    return {"blobs": s.blobs, "bytes": s.bytes, "manifests": s.manifests, "buckets": s.buckets}


def _ended(services: Services, app: str, deployment_id: str):
    d = services.projections.app(app).deployments.get(deployment_id)
    return d if d is not None and d.terminal else None


def _timing(queued: float, events: list, ended: float) -> Timing:
    def at(kind: str) -> list[float]:
        return [e.at for e in events if e.type == kind and not getattr(e, "converged", False)]
    built = next(e for e in events if e.type == "SnapshotBuilt")
    switched = at("HostSwitched")
    return Timing(queued, min(at("DeploymentStarted")), built.seconds or 0.0, built.at, min(switched),
                  max(switched), ended)


def with_documents(fleet: Fleet, moved: Moved, snapshot: str, before: str | None) -> Moved:
    """The roots' and buckets' bytes (the routes count them, not their bytes), checked against
    what the routes counted."""
    buckets, size = fleet.documents(snapshot, before)
    hosts = len(fleet.hosts)
    if moved.manifests != hosts or moved.buckets != hosts * buckets:
        console.print(f"[yellow]documents served: {moved.manifests} roots, {moved.buckets} buckets; "
                      f"expected {hosts} and {hosts * buckets}[/]")
    return replace(moved, document_bytes=hosts * size)


def change(i: int, n: int) -> tuple[str, bytes]:
    return rel_path((i * 7919 + 11) % n), b"# change %d\n" % i + os.urandom(200)


def first_rollouts(fleet: Fleet, trees: dict[str, Tree]) -> list[tuple[Moved, Timing, Tree]]:
    results = []
    for app, tree in trees.items():
        console.print(f"first rollout of {app} to {len(fleet.hosts)} hosts ...")
        moved, timing = fleet.deploy(app)
        results.append((with_documents(fleet, moved, fleet.snapshot_of(app), None), timing, tree))
        console.print(f"  all live in {ms(timing.all_live())}; {results[-1][0].per_host(len(fleet.hosts))} per host")
    return results


def one_file_changes(fleet: Fleet, app: str, repo: Path, n: int, warm_up: int, runs: int) -> list[tuple[Moved, Timing]]:
    results = []
    for i in range(warm_up + runs):
        name, data = change(i, n)
        (repo / name).write_bytes(data)
        git(repo, "commit", "--quiet", "-m", f"change {i}", "--", name)
        before = fleet.snapshot_of(app)
        os.sync()
        moved, timing = fleet.deploy(app)
        moved = with_documents(fleet, moved, fleet.snapshot_of(app), before)
        label = "warm-up" if i < warm_up else "run"
        console.print(f"  {label} {i + 1}: all live in {ms(timing.all_live())}; "
                      f"{moved.per_host(len(fleet.hosts))} per host")
        if i >= warm_up:
            results.append((moved, timing))
    return results


def rsync_changes(tree: Path, scratch: Path, n: int, hosts: int, warm_up: int, runs: int) -> tuple[float, float]:
    """Medians of an in-place rsync -a of each one-file change to `hosts` folders holding the
    tree as it was, one after another and all at once (alternately, each its own change)."""
    folders = [scratch / f"h{i}" for i in range(hosts)]
    for f in folders:
        shutil.copytree(tree, f, symlinks=True)
    one, together = [], []
    for i in range(warm_up, warm_up + max(runs, BASELINE_RUNS)):
        for samples, at_once in ((one, False), (together, True)):
            name, data = change(i * 2 + at_once, n)
            (tree / name).write_bytes(data)
            samples.append(rsyncs(tree, folders, at_once))
    shutil.rmtree(scratch)
    return statistics.median(one), statistics.median(together)


def median_moved(samples: list[Moved]) -> Moved:
    return Moved(*(statistics.median(getattr(m, k) for m in samples)
                   for k in ("blobs", "bytes", "manifests", "buckets", "document_bytes")))


def median_timing(samples: list[Timing]) -> dict[str, float]:
    parts = {"queued -> started": lambda t: t.started - t.queued,
             "snapshot (fetch and seal)": lambda t: t.snapshot,
             "snapshot built -> first host switched": lambda t: t.first_host - t.built,
             "first -> last host switched": lambda t: t.last_host - t.first_host,
             "last host switched -> deployment ended": lambda t: t.ended - t.last_host,
             "all live": Timing.all_live}
    return {k: statistics.median(f(t) for t in samples) for k, f in parts.items()}


def bench(base: Path, args) -> dict:
    hosts = [f"h{i + 1}" for i in range(args.hosts)]
    apps = [f"fan{i}" for i in range(args.first_runs)]
    console.print(f"creating {len(apps)} repositories of {args.files} files ...")
    trees = {}
    for seed, app in enumerate(apps):
        files = app_tree(args.files, seed)
        make_repo(base / "repos" / app, files)
        trees[app] = tree_of(files)
    with fleet_running(base, {app: base / "repos" / app for app in apps}, hosts) as fleet:
        first = first_rollouts(fleet, trees)
        console.print(f"one-file changes of {apps[0]} ({args.warm_up} to warm up, then {args.runs}) ...")
        changes = one_file_changes(fleet, apps[0], base / "repos" / apps[0], args.files, args.warm_up, args.runs)
        trash = sum(len(os.listdir(p)) for p in base.glob("h*-data/releases/*/.trash"))
    console.print("rsync baselines ...")
    tree = base / "tree"
    shutil.copytree(base / "repos" / apps[0], tree, ignore=shutil.ignore_patterns(".git"))
    return {"hosts": args.hosts, "tree": trees[apps[0]], "first": first, "changes": changes, "trash": trash,
            "rsync_fresh": (rsync_fresh(tree, base / "scratch", args.hosts, False, BASELINE_RUNS),
                            rsync_fresh(tree, base / "scratch", args.hosts, True, BASELINE_RUNS)),
            "rsync_change": rsync_changes(tree, base / "scratch", args.files, args.hosts, args.warm_up, args.runs)}


def first_rows(r: dict) -> list[tuple]:
    """Each run's figures beside its own tree's, medians of the runs."""
    hosts, runs = r["hosts"], r["first"]
    first, timing = median_moved([m for m, _, _ in runs]), median_timing([t for _, t, _ in runs])
    unique = statistics.median(t.unique for _, _, t in runs)
    unique_b = statistics.median(t.unique_bytes for _, _, t in runs)
    tree_b = statistics.median(t.bytes for _, _, t in runs)
    moved_b = first.bytes + first.document_bytes
    fresh_one, fresh_all = r["rsync_fresh"]

    def ratio(part) -> float:
        return statistics.median(part(m, t) for m, _, t in runs)
    return [
        (f"first rollout: blobs served ({unique:,.0f} unique of {runs[0][2].files:,} files)", f"{first.blobs:,.0f}",
         f"{hosts} x unique {hosts * unique:,.0f}", f"{ratio(lambda m, t: m.blobs / (hosts * t.unique)):.2f}x",
         "each once per host", verdict(all(m.blobs == hosts * t.unique for m, _, t in runs))),
        ("first rollout: blob bytes served", f"{first.bytes:,.0f} B", f"{hosts} x unique {hosts * unique_b:,.0f} B",
         f"{ratio(lambda m, t: m.bytes / (hosts * t.unique_bytes)):.3f}x", "<= 1.0x",
         verdict(all(m.bytes <= hosts * t.unique_bytes for m, _, t in runs))),
        (f"first rollout: + {first.manifests:g} roots, {first.buckets:g} buckets", f"{first.document_bytes:,.0f} B"),
        ("first rollout: all bytes moved", f"{moved_b:,.0f} B", f"{hosts} x the tree {hosts * tree_b:,.0f} B",
         f"{ratio(lambda m, t: (m.bytes + m.document_bytes) / (hosts * t.bytes)):.3f}x"),
        *[(f"first rollout: {k}", ms(v)) for k, v in timing.items() if k != "all live"],
        ("first rollout: queued -> all live", ms(timing["all live"]), f"{hosts} rsync -a in turn {ms(fresh_one)}",
         f"{timing['all live'] / fresh_one:.2f}x"),
        ("", "", f"{hosts} rsync -a at once {ms(fresh_all)}", f"{timing['all live'] / fresh_all:.2f}x")]


def change_rows(r: dict) -> list[tuple]:
    hosts, runs = r["hosts"], [m for m, _ in r["changes"]]
    change, timing = median_moved(runs), median_timing([t for _, t in r["changes"]])
    delta_one, delta_all = r["rsync_change"]
    return [
        ("one-file change: blobs served per host", f"{change.blobs / hosts:g}", "", "", "1",
         verdict(all(m.blobs == hosts for m in runs))),
        ("one-file change: roots + buckets per host", f"{change.manifests / hosts:g} + {change.buckets / hosts:g}",
         "", "", "1 + 1", verdict(all(m.manifests == hosts and m.buckets == hosts for m in runs))),
        ("one-file change: bytes per host (blob + documents)",
         f"{change.bytes / hosts:,.0f} + {change.document_bytes / hosts:,.0f} B"),
        *[(f"one-file change: {k}", ms(v)) for k, v in timing.items() if k != "all live"],
        ("one-file change: queued -> all live", ms(timing["all live"]),
         f"in-place rsync -a x{hosts} in turn {ms(delta_one)}", f"{timing['all live'] / delta_one:.2f}x"),
        ("", "", f"in-place rsync -a x{hosts} at once {ms(delta_all)}", f"{timing['all live'] / delta_all:.2f}x"),
        ("releases left in the hosts' trash at the end", str(r["trash"]))]


def report(r: dict, args) -> None:
    tree = r["tree"]
    console.print(results_table(
        f"Fan-out to {r['hosts']} hosts (issue 19): {tree.files:,} files, {tree.bytes / 1e6:.1f} MB; "
        f"{args.first_runs} first rollout(s), {args.runs} one-file changes (medians)",
        ("measure", "sluice", "baseline", "ratio", "target", "verdict"), first_rows(r) + change_rows(r)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5, help="one-file changes measured")
    parser.add_argument("--warm-up", type=int, default=7, help="one-file changes before those (keep_releases + 2)")
    parser.add_argument("--first-runs", type=int, default=1, help="first rollouts, an app each")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir")
    args = parser.parse_args()
    if not shutil.which("rsync"):
        parser.error("rsync is not installed: the baselines need it (Debian: apt-get install rsync)")
    base = Path(tempfile.mkdtemp(prefix="sluice-fanout-", dir=args.workdir))
    try:
        results = bench(base, args)
    finally:
        remove_tree(base)
    report(results, args)


if __name__ == "__main__":
    main()
