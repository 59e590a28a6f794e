"""Deployment benchmark: Sluice beside `cp -al` and `rsync -a`, measured in the same run.

    .venv/bin/python bench/deploy_tree.py [--files 20000] [--runs 5] [--latency-runs 20]

1. A git repo of N files of 1 KiB (100 per folder): first deploy, then --runs deployments
   that each follow a one-file commit, end to end (real redis-server and Celery worker) and
   in-process, stage by stage. Baselines: `cp -al` and a fresh `rsync -a` of the same tree,
   and an in-place `rsync -a` of a one-file change onto a copy of the tree. The worker's time
   is shown to its deployment's end and to its letting go of the app (pruning included).
2. Change-to-live latency of a 10-file site polled every 1 s (Poller in a thread).
Everything lives in a temp dir (under --workdir if given), removed at the end.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import (
    git,
    git_source,
    make_repo,
    ms,
    pct,
    results_table,
    start_worker,
    verdict,
    wait,
    write_config,
)
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.config.sources import GitSourceConfig
from orchestrator.core import keys
from orchestrator.deploying.sync import sync_now
from orchestrator.releases.materialise import (
    Previous,
    materialise,
    release_dir,
    switch,
)
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.snapshots import Base, Manifest, SnapshotStore
from orchestrator.releases.validation import validate
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import terminate
from orchestrator.runtime.services import Services
from orchestrator.sources.git import GitSource
from orchestrator.triggers.poller import Poller

STAGES = ("fetch", "seal", "validate", "materialise", "switch")
console = Console(width=140)


def rel_path(i: int) -> str:
    return f"d{i // 100:04d}/f{i % 100:03d}.bin"


def commit_change(repo: Path, name: str, data: bytes) -> str:
    (repo / name).write_bytes(data)
    git(repo, "commit", "--quiet", "-m", f"change {name}", "--", name)
    return git(repo, "rev-parse", "HEAD")


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def baselines(tree: Path, dst: Path, runs: int) -> tuple[float, float | None]:
    """Medians of `cp -al SRC DST` and of `rsync -a SRC/ DST/` into a fresh empty DST."""
    def fresh(cmd: list[str], mkdir: bool = False) -> float:
        if mkdir:
            dst.mkdir()
        os.sync()                           # every measurement starts with no dirty pages
        seconds, done = timed(subprocess.run, cmd)
        done.check_returncode()
        shutil.rmtree(dst)
        return seconds
    cp = statistics.median(fresh(["cp", "-al", str(tree), str(dst)]) for _ in range(runs))
    if not shutil.which("rsync"):
        return cp, None
    return cp, statistics.median(fresh(["rsync", "-a", f"{tree}/", f"{dst}/"], mkdir=True)
                                 for _ in range(runs))


def rsync_change(tree: Path, dst: Path, runs: int) -> float:
    """Median of an in-place `rsync -a SRC/ DST/` after one file of SRC changed, DST holding
    SRC as it was: what updating a site in place costs."""
    shutil.copytree(tree, dst)
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    samples = []
    for i in range(runs):
        files[(i * 7919) % len(files)].write_bytes(os.urandom(1024))
        os.sync()
        samples.append(timed(subprocess.run, ["rsync", "-a", f"{tree}/", f"{dst}/"])[0])
    shutil.rmtree(dst)
    return statistics.median(samples)


class InProcess:
    """The worker's building blocks called directly, each stage timed."""

    def __init__(self, data_dir: Path, repo: Path):
        self.data_dir, self.target = data_dir, data_dir / "sites" / "bench"
        self.store = SnapshotStore(data_dir / "store")
        self.src = GitSource(GitSourceConfig(type="git", url=str(repo), branch="master"),
                             data_dir / "cache" / "git")
        self.live: tuple[str, Manifest, Path] | None = None     # revision, manifest, release

    def deploy(self, revision: str, tag: str) -> tuple[dict[str, float], int]:
        """The runner's steps: start from the live snapshot, patch the live release."""
        t = {}
        base = Base(self.live[0], self.live[1]) if self.live else None
        previous = Previous(self.live[1], self.live[2]) if self.live else None
        writer = self.store.builder(base)
        t["fetch"] = timed(self.src.fetch, revision, writer)[0]
        t["seal"], snap = timed(writer.seal)
        t["validate"] = timed(validate, "site", snap.manifest, self.store)[0]
        t["materialise"], rel = timed(materialise, self.store, snap.manifest,
                                      release_dir(self.data_dir, "bench", tag), previous, snap.fresh)
        t["switch"] = timed(switch, self.target, rel)[0]
        self.live = (revision, snap.manifest, rel)
        return t, snap.blobs_added


def ended(services: Services, app: str, deployment_id: str):
    d = services.projections.app(app).deployments.get(deployment_id)
    return d if d is not None and d.terminal else None


def deploy_e2e(services: Services, app: str) -> tuple[float, float, float]:
    """(worker seconds started->ended, wall seconds sync->ended, worker seconds started->
    the app let go: its old releases pruned, its lease and clean-up over) of one sync_now."""
    t0 = time.monotonic()
    q = sync_now(services, app)
    d = wait(lambda: ended(services, app, q.deployment_id), 0.002, 300, q.deployment_id)
    wall = time.monotonic() - t0
    if d.status != "success":
        raise RuntimeError(f"deployment {d.id}: {d.status}: {d.message}")
    wait(lambda: not services.redis.exists(keys.lease(app), keys.cleaning(app)), 0.002, 300,
         f"{app} to be let go")
    return d.ended_at - d.started_at, wall, time.time() - d.started_at


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def latency(services: Services, repo: Path, live: Path, runs: int) -> list[float]:
    """Commit to a polled repo; seconds until the live release shows the change."""
    stop = threading.Event()
    thread = threading.Thread(target=Poller(services).run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait(lambda: read_or_none(live) == b"v0", 0.005, 60, "the first release")
        samples = []
        for i in range(1, runs + 1):
            time.sleep(random.uniform(0, 1.0))      # commit at a random phase of the polls
            commit_change(repo, live.name, b"v%d" % i)
            t0 = time.monotonic()
            wait(lambda: read_or_none(live) == b"v%d" % i, 0.005, 60, f"change {i} to go live")
            samples.append(time.monotonic() - t0)
        return samples
    finally:
        stop.set()
        thread.join(10)


def one_file_changes(inproc: InProcess, services: Services, repo: Path, args) -> dict:
    """--runs commits of one different file each, deployed in-process and end to end."""
    samples = []
    for i in range(args.runs):
        rev = commit_change(repo, rel_path((i * 7919 + 1) % args.files), os.urandom(1024))
        os.sync()
        stages, added = inproc.deploy(rev, f"run{i}")
        if added != 1:
            raise RuntimeError(f"a one-file change added {added} blobs")
        os.sync()
        samples.append((stages, *deploy_e2e(services, "bench")))
        console.print(f"run {i + 1}: worker {ms(samples[-1][1])}, wall {ms(samples[-1][2])}, "
                      f"in-process {ms(sum(stages.values()))}")
    return {"stages": {s: statistics.median(x[0][s] for x in samples) for s in STAGES},
            "worker": statistics.median(x[1] for x in samples),
            "wall": statistics.median(x[2] for x in samples),
            "let_go": statistics.median(x[3] for x in samples)}


def bench(base: Path, args) -> dict:
    repo, small = base / "repos" / "bench", base / "repos" / "latency"
    console.print(f"creating {args.files} files in {repo} ...")
    rev = make_repo(repo, {rel_path(i): os.urandom(1024) for i in range(args.files)})
    make_repo(small, {"index.html": b"v0", **{f"p{i}.html": b"<p>%d</p>" % i for i in range(9)}})
    redis_proc = worker = None
    try:
        redis_proc, url = start_redis(base / "redis")
        cfg = write_config(base, url, {"bench": git_source(repo, "1s"), "latency": git_source(small, "1s")})
        worker = start_worker(cfg, url, base / "worker.log")
        services = Services.build(load_config(cfg))
        inproc = InProcess(base / "inproc", repo)
        r = {"runs": args.runs, "first_stages": inproc.deploy(rev, "first")[0],
             "first": deploy_e2e(services, "bench")}
        r.update(one_file_changes(inproc, services, repo, args))
        shutil.copytree(repo, base / "tree", ignore=shutil.ignore_patterns(".git"))
        r["cp"], r["rsync"] = baselines(base / "tree", base / "dst", max(args.runs, 5))
        r["rsync_change"] = rsync_change(base / "tree", base / "dst", max(args.runs, 5)) \
            if r["rsync"] is not None else None
        console.print(f"change-to-live latency, {args.latency_runs} commits ...")
        r["latency"] = latency(services, small, base / "sites" / "latency" / "index.html",
                               args.latency_runs)
        return r
    finally:
        terminate(worker)
        terminate(redis_proc)


def report(n: int, r: dict) -> None:
    cp, rs, w, st, lat = r["cp"], r["rsync"], r["worker"], r["stages"], r["latency"]
    total, p50, cp_s = sum(st.values()), pct(lat, .5), f"cp -al {ms(cp)}"
    rows = [("first deploy, worker (wall)", f"{ms(r['first'][0])} ({ms(r['first'][1])})",
             cp_s, f"{r['first'][0] / cp:.1f}x"),
            ("1-file change, worker", ms(w), cp_s, f"{w / cp:.2f}x", "<= 2x cp -al",
             verdict(w <= 2 * cp)),
            ("1-file change, worker", ms(w), "rsync: not installed", "", ">= 20x faster", "n/a")
            if rs is None else
            ("1-file change, worker", ms(w), f"rsync -a {ms(rs)}", f"{rs / w:.2f}x faster",
             ">= 20x faster", verdict(rs >= 20 * w)),
            ("1-file change, worker to letting go (pruning included)", ms(r["let_go"]), cp_s,
             f"{r['let_go'] / cp:.2f}x"),
            *([] if r["rsync_change"] is None else
              [("1-file change, worker to letting go", ms(r["let_go"]),
                f"in-place rsync -a {ms(r['rsync_change'])}", f"{r['let_go'] / r['rsync_change']:.2f}x",
                "<= 1x", verdict(r["let_go"] <= r["rsync_change"]))]),
            ("1-file change, wall (sync -> live)", ms(r["wall"]), cp_s, f"{r['wall'] / cp:.2f}x"),
            ("in-process first deploy", ms(sum(r["first_stages"].values()))),
            ("in-process 1-file change, total", ms(total), cp_s, f"{total / cp:.2f}x"),
            ("  fetch+snapshot (fetch / seal)",
             f"{ms(st['fetch'] + st['seal'])} ({ms(st['fetch'])} / {ms(st['seal'])})"),
            *[(f"  {s}", ms(st[s])) for s in ("validate", "materialise", "switch")],
            ("change-to-live p50 (poll 1s)", f"{p50:.2f} s", "", "", "<= 1.5 s", verdict(p50 <= 1.5)),
            (f"change-to-live p90 / max ({len(lat)} runs)", f"{pct(lat, .9):.2f} / {max(lat):.2f} s")]
    console.print(results_table(
        f"Sluice deployment benchmark: {n} files x 1 KiB, {r['runs']} runs (medians)",
        ("measure", "sluice", "baseline", "ratio", "target", "verdict"), rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000, help="files in the big tree")
    parser.add_argument("--runs", type=int, default=5, help="one-file-change deployments")
    parser.add_argument("--latency-runs", type=int, default=20, help="change-to-live samples")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sluice-bench-", dir=args.workdir))
    try:
        results = bench(base, args)
    finally:
        remove_tree(base)
    report(args.files, results)


if __name__ == "__main__":
    main()
