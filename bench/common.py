"""What every benchmark here shares: git with an identity, a repository and a config to
deploy from, a worker, waiting, and how figures print."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import yaml
from rich.table import Table

from orchestrator.runtime.processes import die_with_parent

if TYPE_CHECKING:
    from orchestrator.runtime.services import Services

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout.strip()


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo, GIT_ENV)


def make_repo(repo: Path, files: dict[str, bytes]) -> str:
    """A repository of one commit holding `files`, packed; returns the commit id."""
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


def git_source(repo: Path, poll_interval: str) -> dict:
    return {"type": "git", "url": str(repo), "branch": "master", "poll_interval": poll_interval}


def write_config(base: Path, redis_url: str, sources: dict[str, dict]) -> Path:
    """base/sluice.yaml: a site app per source, deployed to base/sites/APP."""
    apps = {name: {"layout": "site", "target": str(base / "sites" / name), "source": source}
            for name, source in sources.items()}
    cfg = base / "sluice.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(base / "data"), "redis_url": redis_url,
                                   "apps": apps}))
    return cfg


def start_worker(cfg: Path, redis_url: str, log: Path, *options: str) -> subprocess.Popen:
    """`sluice worker` (log level INFO), once its log says it is ready."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg),
                                 "worker", *options], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, env={**os.environ, **GIT_ENV, "SLUICE_REDIS_URL": redis_url},
                                preexec_fn=die_with_parent)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("worker exited:\n" + log.read_text(errors="replace")[-3000:])
        return "ready." in log.read_text(errors="replace")
    wait(ready, 0.05, 60, "the worker")
    return proc


def poll_health(api_url: str, work, seconds: float | None) -> list[float]:
    """/healthz latencies, polled every 20 ms while `work` runs (or for `seconds`), from a
    process of its own: the load's threads must not slow the poller's client."""
    forked = multiprocessing.get_context("fork")
    done, results = forked.Event(), forked.Queue()
    poller = forked.Process(target=_poll, args=(api_url, done, results))
    poller.start()
    try:
        work() if seconds is None else time.sleep(seconds)
    finally:
        done.set()
        latencies = results.get(timeout=120)
        poller.join()
    return latencies


def _poll(api_url: str, done, results) -> None:
    latencies = []
    with httpx.Client(timeout=60) as client:
        while not done.is_set():
            started = time.monotonic()
            client.get(f"{api_url}/healthz").raise_for_status()
            latencies.append(time.monotonic() - started)
            time.sleep(0.02)
    results.put(latencies)


def wait(predicate, interval: float, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return value


def ms(s: float) -> str:
    return f"{s * 1000:.{2 if s < 0.01 else 1 if s < 0.1 else 0}f} ms"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def results_table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> Table:
    """Measures left, figures right-aligned beside their baselines and targets."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == "measure" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]FAIL[/]"


@contextmanager
def sluice_running(base: Path, apps: dict) -> Iterator[Services]:
    """A redis-server and a `sluice worker` for `apps` (base/sluice.yaml, data in base/data):
    the Services a bench drives them with."""
    from orchestrator.config.settings import load_config
    from orchestrator.runtime.embedded_redis import start_redis
    from orchestrator.runtime.processes import terminate
    from orchestrator.runtime.services import Services
    redis_proc, redis_url = start_redis(base / "redis")
    try:
        cfg = base / "sluice.yaml"
        cfg.write_text(yaml.safe_dump({"data_dir": str(base / "data"), "redis_url": redis_url, "apps": apps}))
        services = Services.build(load_config(cfg, {**os.environ, **GIT_ENV}))
        worker = start_worker(cfg, redis_url, base / "worker.log")
        try:
            yield services
        finally:
            terminate(worker)
    finally:
        terminate(redis_proc)


def best(work, runs: int = 3) -> float:
    """The shortest of `runs` timings of `work()`, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def rsyncs(tree: Path, folders: list[Path], at_once: bool) -> float:
    """Seconds for `rsync -a tree/ folder/` to each folder, one after another or all at once."""
    os.sync()                                   # each measurement starts with no dirty pages
    started = time.perf_counter()
    commands = [["rsync", "-a", f"{tree}/", f"{folder}/"] for folder in folders]
    if at_once:
        for proc in [subprocess.Popen(c) for c in commands]:
            if proc.wait():
                raise RuntimeError("rsync failed")
    else:
        for c in commands:
            subprocess.run(c, check=True)
    return time.perf_counter() - started


def rsync_fresh(tree: Path, scratch: Path, hosts: int, at_once: bool, runs: int) -> float:
    """Median of rsync -a of the tree into `hosts` empty folders."""
    samples = []
    for _ in range(runs):
        folders = [scratch / f"h{i}" for i in range(hosts)]
        for f in folders:
            f.mkdir(parents=True)
        samples.append(rsyncs(tree, folders, at_once))
        shutil.rmtree(scratch)
    return statistics.median(samples)
