"""Mercurial as fast as Git where the protocol allows (issue 16).

    .venv/bin/python bench/scale_hg.py [--changes 7] [--trials 8]

(a) A one-file change's snapshot (HgSource.fetch and seal from the live snapshot, as the
    worker builds it), the same trees in hg over `hg serve` (TCP_NODELAY on, as production
    web servers have it: without it each answer on a kept-alive connection after the first
    waits ~40 ms for a delayed ACK, tests/servers/hg_nodelay.py) and in git over `git
    http-backend` (tests/servers/git_http.py, a process of its own), 7 and 1,000 files;
    median of --changes changes each. hg as a worker runs it (its clone's command server
    waiting), beside git's, and beside two hg baselines of the same run: a fresh process
    per command, as before (a pool that keeps no server), and the first change in a fresh
    worker process (its server started then). Targets: <= 0.5 s and <= 3x git's.
(b) Commit to live with a 1 s poll: a real `sluice poller` and `sluice worker` on one
    redis-server, an hg and a git app on 7 files; a one-file commit at a random moment
    within the poll interval, timed until the live release holds it (--trials each, hg and
    git taking turns, never both at once). Target: <= git's + 0.5 s.
Everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import ROOT, git, make_repo, ms, results_table, run, start_worker, wait, write_config
from rich.console import Console

from orchestrator.config.sources import GitSourceConfig, HgSourceConfig
from orchestrator.releases.snapshots import Base, SnapshotStore
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.sources import hg as hg_module
from orchestrator.sources.git import GitSource
from orchestrator.sources.hg import HgSource, hg_executable
from orchestrator.sources.hg_server import CommandServers, Reply

sys.path.insert(0, str(ROOT))
from tests.servers.hg_serve import HgRepo, hg, hg_serve  # noqa: E402

SNAPSHOT_TARGET, RATIO_TARGET, LIVE_MARGIN = 0.5, 3.0, 0.5
console = Console(width=150)


def tree(files: int) -> dict[str, str]:
    return {f"site/page{i}.html" if i else "index.html": f"<p>page {i}</p>\n" for i in range(files)}


class GitServed:
    """A git working repository, pushed to a bare one that `git http-backend` serves."""

    def __init__(self, base: Path, name: str, files: dict[str, str], url: str):
        self.work = base / f"{name}-work"
        make_repo(self.work, {path: text.encode() for path, text in files.items()})
        run(["git", "clone", "--quiet", "--bare", str(self.work), str(base / "served" / f"{name}.git")])
        git(self.work, "remote", "add", "origin", str(base / "served" / f"{name}.git"))
        self.url = f"{url}/{name}.git"

    def commit(self, path: str, text: str) -> str:
        (self.work / path).write_text(text)
        git(self.work, "commit", "--quiet", "-am", "change")
        git(self.work, "push", "--quiet", "origin", "master")
        return git(self.work, "rev-parse", "HEAD")

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")


class HgServed:
    """An hg repository that `hg serve` serves, and a clone of it committed to and pushed
    from, so that a commit shows in the served one at the end of the push, as git's does."""

    def __init__(self, base: Path, files: dict[str, str]):
        self.served = HgRepo(base / "hg-served")
        self.served.commit(files)
        self.work = HgRepo(base / "hg-work")
        hg(self.work.path, "pull", "--quiet", "--update", str(self.served.path))

    def commit(self, path: str, text: str) -> str:
        node = self.work.commit({path: text})
        hg(self.work.path, "push", "--quiet", str(self.served.path))
        return node

    def head(self) -> str:
        return self.served.head()


def changes_timed(source, store: SnapshotStore, served, n: int, before_each: Callable[[], None]) -> list[float]:
    """Seconds per one-file change's snapshot, built from the one before as the worker does."""
    revision = served.head()
    writer = store.builder(None)
    source.fetch(revision, writer)
    live = Base(revision, writer.seal().manifest)
    times = []
    for i in range(n):
        revision = served.commit("index.html", f"<p>change {i} {time.time()}</p>\n")
        before_each()
        started = time.perf_counter()
        writer = store.builder(live)
        source.fetch(revision, writer)
        snapshot = writer.seal()
        times.append(time.perf_counter() - started)
        assert snapshot.incremental, "the change was not snapshotted incrementally"
        live = Base(revision, snapshot.manifest)
    return times


def snapshot_figures(base: Path, files: int, n: int) -> dict[str, list[float]]:
    content = tree(files)
    (base / "served").mkdir(parents=True)
    server = subprocess.Popen([sys.executable, "-m", "tests.servers.git_http", str(base / "served")],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=die_with_parent)
    try:
        git_url = server.stdout.readline().strip()
        served_hg = HgServed(base, content)
        with hg_serve(served_hg.served.path, base / "hg-serve.log") as hg_url:
            figures = {}
            served_git = GitServed(base, "site", content, git_url)
            figures["git"] = changes_timed(GitSource(GitSourceConfig(type="git", url=served_git.url),
                                                     base / "cache-git"), SnapshotStore(base / "store-git"),
                                           served_git, n, lambda: None)
            for kind, pools in (("hg", None), ("hg-cold", "fresh"), ("hg-before", "none")):
                figures[kind] = with_pool(pools, base, lambda: changes_timed(
                    HgSource(HgSourceConfig(type="hg", url=hg_url), base / f"cache-{kind}"),
                    SnapshotStore(base / f"store-{kind}"), served_hg, n,
                    (lambda: fresh_pool(8)) if pools == "fresh" else lambda: None))
            return figures
    finally:
        terminate(server)


class ProcessPerCommand:
    """What HgSource did before its command servers: `hg ARGS` a process each, in the clone."""

    def __init__(self, hgrc: Path):
        hgrc.write_text("[ui]\ninteractive = false\n")
        self.env = {**os.environ, "HGPLAIN": "1", "HGRCPATH": str(hgrc), "HGENCODING": "utf-8"}

    def run(self, key: tuple, start, args: list[bytes], label: str) -> Reply:
        clone = key[0]          # HgSource's key: (clone, its inode, its settings' digest)
        proc = subprocess.run([hg_executable(), *args], cwd=clone, env=self.env, capture_output=True,
                              stdin=subprocess.DEVNULL)
        return Reply(proc.returncode, proc.stdout, proc.stderr)

    def close_all(self) -> None:
        pass


def with_pool(kind: str | None, base: Path, work):
    """`work` with the hg source's command servers as a worker keeps them (None), or new
    ones, or as before ("none": a process per command)."""
    kept = hg_module.servers
    hg_module.servers = ProcessPerCommand(base / "before.hgrc") if kind == "none" else CommandServers()
    try:
        return work()
    finally:
        hg_module.servers.close_all()
        hg_module.servers = kept


def fresh_pool(limit: int) -> None:
    hg_module.servers.close_all()
    hg_module.servers = CommandServers(limit=limit)


def commit_to_live(base: Path, trials: int) -> dict[str, list[float]]:
    content = tree(7)
    (base / "served").mkdir(parents=True)
    procs: list[subprocess.Popen] = []
    try:
        redis_proc, redis_url = start_redis(base / "redis")
        procs.append(redis_proc)
        git_server = subprocess.Popen([sys.executable, "-m", "tests.servers.git_http", str(base / "served")],
                                      stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=die_with_parent)
        procs.append(git_server)
        served_git = GitServed(base, "site", content, git_server.stdout.readline().strip())
        served_hg = HgServed(base, content)
        with hg_serve(served_hg.served.path, base / "hg-serve.log") as hg_url:
            sources = {"hg": {"type": "hg", "url": hg_url, "poll_interval": "1s"},
                       "git": {"type": "git", "url": served_git.url, "branch": "master", "poll_interval": "1s"}}
            cfg = write_config(base, redis_url, sources)
            procs.append(start_worker(cfg, redis_url, base / "worker.log"))
            with open(base / "poller.log", "wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg),
                                               "poller"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                              env={**os.environ, "SLUICE_REDIS_URL": redis_url},
                                              preexec_fn=die_with_parent))
            served = {"hg": served_hg, "git": served_git}
            for app in served:
                wait(lambda: (base / "sites" / app / "index.html").exists(), 0.05, 120, f"{app}'s first deployment")
            times: dict[str, list[float]] = {"hg": [], "git": []}
            for i in range(trials):
                for app, scm in served.items():
                    time.sleep(random.uniform(0, 1))
                    text = f"<p>live {i} {time.time()}</p>\n"
                    live = base / "sites" / app / "index.html"
                    scm.commit("index.html", text)       # in the served repository as the push ends
                    started = time.perf_counter()
                    wait(lambda: live.read_text() == text, 0.005, 60, f"{app} to go live")
                    times[app].append(time.perf_counter() - started)
            return times
    finally:
        for proc in reversed(procs):
            terminate(proc)


def measure(args) -> list[tuple[str, str, str, str]]:
    changes, trials = getattr(args, "changes", 7), getattr(args, "trials", 8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-scale-hg-") as tmp:
        for files in (7, 1000):
            f = snapshot_figures(Path(tmp) / f"tree-{files}", files, changes)
            hg, git_, cold, before = (statistics.median(f[k]) for k in ("hg", "git", "hg-cold", "hg-before"))
            ok = hg <= SNAPSHOT_TARGET and hg <= RATIO_TARGET * git_
            rows.append((f"hg one-file change snapshot, {files:,} files (median of {changes})", ms(hg),
                         f"git {ms(git_)}; hg before (a process per command) {ms(before)}",
                         f"<= {ms(SNAPSHOT_TARGET)} and ratio {hg / git_:.1f} <= {RATIO_TARGET:.0f}: "
                         f"{'met' if ok else 'NOT met'}"))
            rows.append((f"  the first change in a fresh worker process, {files:,} files", ms(cold),
                         f"hg before {ms(before)}", "(its command server started then)"))
        live = commit_to_live(Path(tmp) / "live", trials)
        hg, git_ = statistics.median(live["hg"]), statistics.median(live["git"])
        rows.append((f"hg commit-to-live, 1 s poll, 7 files (median of {trials})", ms(hg), f"git {ms(git_)}",
                     f"<= git + {ms(LIVE_MARGIN)}: {'met' if hg <= git_ + LIVE_MARGIN else 'NOT met'}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=7)
    parser.add_argument("--trials", type=int, default=8)
    rows = measure(parser.parse_args())
    console.print(results_table("Mercurial beside Git (issue 16)",
                                ("measure", "Sluice", "baseline (same run)", "target"), rows))


if __name__ == "__main__":
    sys.exit(main())
