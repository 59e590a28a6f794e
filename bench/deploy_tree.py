"""Deployment benchmark: Sluice beside `cp -al` and `rsync -a`, measured in the same run.

    .venv/bin/python bench/deploy_tree.py [--files 20000] [--runs 5] [--latency-runs 20]

1. A git repo of N files of 1 KiB (100 per folder): first deploy, then --runs deployments
   that each follow a one-file commit, end to end (real redis-server and Celery worker) and
   in-process, stage by stage. Baselines: `cp -al` and a fresh `rsync -a` of the same tree.
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
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.config import GitSourceConfig, load_config  # noqa: E402
from orchestrator.embedded_redis import start_redis  # noqa: E402
from orchestrator.poller import Poller, sync_now  # noqa: E402
from orchestrator.processes import die_with_parent, terminate  # noqa: E402
from orchestrator.services import Services  # noqa: E402
from orchestrator.sources.git import GitSource  # noqa: E402
from workers.deploy import materialise, release_dir, remove_tree, switch  # noqa: E402
from workers.snapshots import SnapshotStore  # noqa: E402
from workers.validate import validate  # noqa: E402

GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
PER_FOLDER = 100
STAGES = ("fetch", "seal", "validate", "materialise", "switch")
console = Console(width=140)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def rel_path(i: int) -> str:
    return f"d{i // PER_FOLDER:04d}/f{i % PER_FOLDER:03d}.bin"


def make_repo(repo: Path, files: dict[str, bytes]) -> str:
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=master")
    git(repo, "config", "gc.auto", "0")     # no background auto-gc during the measurements
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "initial")
    git(repo, "gc", "--quiet")              # packed, as a clone of a remote would be
    return git(repo, "rev-parse", "HEAD")


def commit_change(repo: Path, name: str, data: bytes) -> str:
    (repo / name).write_bytes(data)
    git(repo, "add", name)
    git(repo, "commit", "--quiet", "-m", f"change {name}")
    return git(repo, "rev-parse", "HEAD")


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def baselines(tree: Path, scratch: Path, runs: int) -> tuple[float, float | None]:
    """Median seconds of `cp -al SRC DST` and of `rsync -a SRC/ DST/` into an empty DST."""
    def once(cmd: list[str], dst: Path) -> float:
        seconds, done = timed(subprocess.run, cmd)
        done.check_returncode()
        shutil.rmtree(dst)
        return seconds
    cp = [once(["cp", "-al", str(tree), str(scratch / f"cp{i}")], scratch / f"cp{i}")
          for i in range(runs)]
    if not shutil.which("rsync"):
        return statistics.median(cp), None
    rs = []
    for i in range(runs):
        (scratch / f"rs{i}").mkdir()
        rs.append(once(["rsync", "-a", f"{tree}/", f"{scratch / f'rs{i}'}/"], scratch / f"rs{i}"))
    return statistics.median(cp), statistics.median(rs)


class InProcess:
    """The worker's building blocks called directly, each stage timed."""

    def __init__(self, data_dir: Path, repo: Path):
        self.data_dir, self.target = data_dir, data_dir / "sites" / "bench"
        self.store = SnapshotStore(data_dir / "store")
        self.src = GitSource(GitSourceConfig(type="git", url=str(repo), branch="master"),
                             data_dir / "cache" / "git")

    def deploy(self, revision: str, tag: str) -> dict[str, float]:
        t, writer = {}, self.store.writer()
        t["fetch"] = timed(self.src.fetch, revision, writer)[0]
        t["seal"], snap = timed(writer.seal)
        t["validate"] = timed(validate, "site", snap.manifest, self.store)[0]
        t["materialise"], rel = timed(materialise, self.store, snap.manifest,
                                      release_dir(self.data_dir, "bench", tag))
        t["switch"] = timed(switch, self.target, rel)[0]
        t["blobs_added"] = snap.blobs_added
        return t


def write_config(cfg: Path, base: Path, url: str, repos: dict[str, Path]) -> None:
    apps = {name: {"layout": "site", "target": str(base / "sites" / name),
                   "source": {"type": "git", "url": str(path), "branch": "master",
                              "poll_interval": "1s"}} for name, path in repos.items()}
    cfg.write_text(yaml.safe_dump({"data_dir": str(base / "data"), "redis_url": url,
                                   "apps": apps}))


def start_worker(cfg: Path, url: str, log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg),
                             "worker"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, **GIT_ENV, "SLUICE_REDIS_URL": url},
                            preexec_fn=die_with_parent)
    out.close()
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("worker did not start:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.05)
    return proc


def deploy_e2e(services: Services, app: str) -> tuple[float, float]:
    """(worker seconds started->ended, wall seconds sync->ended) of one sync_now."""
    t0 = time.monotonic()
    q = sync_now(services, app)
    while True:
        d = services.projections.app(app).deployments.get(q.deployment_id)
        if d is not None and d.terminal:
            break
        time.sleep(0.01)
    wall = time.monotonic() - t0
    if d.status != "success":
        raise RuntimeError(f"deployment {d.id}: {d.status}: {d.message}")
    return d.ended_at - d.started_at, wall


def wait_content(path: Path, expected: bytes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if path.read_bytes() == expected:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not get the new content within {timeout:.0f}s")
        time.sleep(0.005)


def latency(services: Services, repo: Path, target: Path, runs: int) -> list[float]:
    """Commit to a polled repo; seconds until the live release shows it."""
    stop = threading.Event()
    thread = threading.Thread(target=Poller(services).run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_content(target / "index.html", b"v0")
        samples = []
        for i in range(1, runs + 1):
            time.sleep(random.uniform(0, 1.0))      # commit at a random phase of the poll
            commit_change(repo, "index.html", f"v{i}".encode())
            t0 = time.monotonic()
            wait_content(target / "index.html", f"v{i}".encode())
            samples.append(time.monotonic() - t0)
        return samples
    finally:
        stop.set()
        thread.join(10)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]FAIL[/]"


def report(n: int, r: dict) -> None:
    ms = lambda s: f"{s * 1000:.1f} ms" if s < 0.1 else f"{s * 1000:.0f} ms"  # noqa: E731
    t = Table(title=f"Sluice deployment benchmark: {n} files x 1 KiB, {r['runs']} runs (medians)")
    for col in ("measure", "sluice", "baseline", "ratio", "target", "verdict"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    cp, rs, w, wall = r["cp"], r["rsync"], r["worker"], r["wall"]
    t.add_row("first deploy, worker (wall)", f"{ms(r['first'][0])} ({ms(r['first'][1])})",
              f"cp -al {ms(cp)}", f"{r['first'][0] / cp:.1f}x", "", "")
    t.add_row("1-file change, worker", ms(w), f"cp -al {ms(cp)}", f"{w / cp:.2f}x",
              "<= 2x cp -al", verdict(w <= 2 * cp))
    if rs is None:
        t.add_row("1-file change, worker", ms(w), "rsync: not installed", "", ">= 20x faster", "n/a")
    else:
        t.add_row("1-file change, worker", ms(w), f"rsync -a {ms(rs)}", f"{rs / w:.1f}x faster",
                  ">= 20x faster", verdict(rs >= 20 * w))
    t.add_row("1-file change, wall (sync -> live)", ms(wall), f"cp -al {ms(cp)}",
              f"{wall / cp:.2f}x", "", "")
    stages = r["stages"]
    t.add_row("in-process first deploy", ms(sum(r["first_stages"][s] for s in STAGES)), "", "", "", "")
    t.add_row("in-process 1-file change, total", ms(sum(stages.values())), f"cp -al {ms(cp)}",
              f"{sum(stages.values()) / cp:.2f}x", "", "")
    t.add_row("  fetch+snapshot (fetch / seal)",
              f"{ms(stages['fetch'] + stages['seal'])} ({ms(stages['fetch'])} / {ms(stages['seal'])})",
              "", "", "", "")
    for s in ("validate", "materialise", "switch"):
        t.add_row(f"  {s}", ms(stages[s]), "", "", "", "")
    lat = r["latency"]
    t.add_row("change-to-live p50 (poll 1s)", f"{pct(lat, .5):.2f} s", "", "", "<= 1.5 s",
              verdict(pct(lat, .5) <= 1.5))
    t.add_row(f"change-to-live p90 / max ({len(lat)} runs)",
              f"{pct(lat, .9):.2f} / {max(lat):.2f} s", "", "", "", "")
    console.print(t)


def bench(base: Path, args) -> dict:
    r: dict = {"runs": args.runs}
    repo, small = base / "repos" / "bench", base / "repos" / "latency"
    console.print(f"creating {args.files} files in {repo} ...")
    rev = make_repo(repo, {rel_path(i): os.urandom(1024) for i in range(args.files)})
    make_repo(small, {"index.html": b"v0", **{f"page{i}.html": b"<p>%d</p>" % i for i in range(9)}})
    redis_proc = worker = None
    try:
        redis_proc, url = start_redis(base / "redis")
        cfg = base / "sluice.yaml"
        write_config(cfg, base, url, {"bench": repo, "latency": small})
        worker = start_worker(cfg, url, base / "worker.log")
        services = Services.build(load_config(cfg))
        inproc = InProcess(base / "inproc", repo)
        r["first_stages"] = inproc.deploy(rev, "first")
        r["first"] = deploy_e2e(services, "bench")
        samples = []
        for i in range(args.runs):
            rev = commit_change(repo, rel_path((i * 7919 + 1) % args.files), os.urandom(1024))
            stages = inproc.deploy(rev, f"run{i}")
            if stages.pop("blobs_added") != 1:
                raise RuntimeError("a one-file change should add exactly one blob")
            samples.append((stages, deploy_e2e(services, "bench")))
            console.print(f"run {i + 1}: worker {samples[-1][1][0] * 1000:.0f} ms, "
                          f"in-process {sum(stages.values()) * 1000:.0f} ms")
        r["stages"] = {s: statistics.median(x[0][s] for x in samples) for s in STAGES}
        r["worker"] = statistics.median(x[1][0] for x in samples)
        r["wall"] = statistics.median(x[1][1] for x in samples)
        tree = base / "tree"
        shutil.copytree(repo, tree, ignore=shutil.ignore_patterns(".git"))
        (base / "scratch").mkdir()
        r["cp"], r["rsync"] = baselines(tree, base / "scratch", args.runs)
        console.print(f"change-to-live latency, {args.latency_runs} commits ...")
        r["latency"] = latency(services, small, base / "sites" / "latency", args.latency_runs)
        return r
    finally:
        terminate(worker)
        terminate(redis_proc)


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
