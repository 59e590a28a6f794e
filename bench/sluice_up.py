"""`sluice up` benchmark: how long SIGTERM takes to stop it, idle and under load, and how soon
a part killed with kill -9 is back, measured in one run.

    .venv/bin/python bench/sluice_up.py [--files 3000] [--rounds 3]

1. Start (baseline for 3): from `sluice up` to the first deployment of --files files live.
2. Stop: SIGTERM until `sluice up` has exited and every process it started is gone. Idle is
   the baseline; under load a deployment of every file changed is running, 3 event streams
   (GET /api/events) are open and the poller checks every second. Promised: within the
   children's shared 10 s grace (plus Redis writing its AOF out).
3. kill -9 of the embedded Redis, the worker, the poller: from the kill until the part is
   running again (Redis: PONG on its unchanged URL) and until a commit made right after the
   kill is live.
The code measured is this tree's; everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis
import yaml
from common import GIT_ENV, ROOT, git, make_repo, results_table, verdict, wait
from rich.console import Console

from orchestrator.core import keys
from orchestrator.runtime.embedded_redis import free_port

sys.path.insert(0, str(ROOT))
from tests.process_tree import alive, children_of, descendants_of  # noqa: E402

STOP_PROMISE = 10.0 + 5.0       # supervisor.STOP_GRACE + REDIS_GRACE
console = Console(width=120)


class Up:
    def __init__(self, base: Path, repo: Path):
        self.base, self.repo, self.port = base, repo, free_port()
        self.target = base / "sites" / "site"
        source = {"type": "git", "url": str(repo), "branch": "master", "poll_interval": "1s"}
        config = base / "sluice.yaml"
        config.write_text(yaml.safe_dump({
            "data_dir": str(base / "data"), "api": {"listen": f"127.0.0.1:{self.port}"},
            "apps": {"site": {"layout": "site", "target": str(self.target), "source": source}}}))
        env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_REDIS_URL", "SLUICE_CONFIG")}
        self.log = base / "up.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config",
                                          str(config), "up"], stdout=out, stderr=subprocess.STDOUT,
                                         cwd=ROOT, env={**env, **GIT_ENV})

    def live(self, marker: str) -> bool:
        try:
            return marker in (self.target / "index.html").read_text()
        except OSError:
            return False

    def child(self, marker: str) -> int | None:
        return next((pid for pid, argv in children_of(self.proc.pid).items() if marker in argv), None)

    def stop(self) -> float:
        """Seconds from SIGTERM until it and all it started are gone."""
        everything = descendants_of(self.proc.pid)
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        wait(lambda: not any(alive(pid) for pid in everything), 0.01, 30, "every child to end")
        return time.monotonic() - started


def commit(repo: Path, files: int, marker: str) -> None:
    for i in range(files):
        (repo / f"pages/p{i:05d}.html").write_text(f"page {i} {marker}\n")
    (repo / "index.html").write_text(f"<h1>{marker}</h1>\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", marker)


def started(base: Path, files: int, round_: int) -> tuple[Up, float]:
    root = base / f"round-{round_}"
    repo = root / "repo"
    make_repo(repo, {"index.html": b"<h1>first</h1>\n",
                     **{f"pages/p{i:05d}.html": f"page {i}\n".encode() for i in range(files)}})
    began = time.monotonic()
    up = Up(root, repo)
    wait(lambda: up.live("first"), 0.02, 180, "the first deployment")
    return up, time.monotonic() - began


def loaded_stop(up: Up, files: int) -> float:
    streams = [urllib.request.urlopen(f"http://127.0.0.1:{up.port}/api/events", timeout=30)
               for _ in range(3)]
    try:
        commit(up.repo, files, "loaded")
        wait(lambda: up.log.read_text().count("DeploymentStarted") >= 2, 0.01, 60,
             "the second deployment to start")
        return up.stop()
    finally:
        for stream in streams:
            stream.close()


def recoveries(up: Up) -> list[tuple[str, float, float]]:
    """(part, seconds until it runs again, seconds until a commit made at the kill is live)."""
    url = (up.base / "data" / "redis" / "url").read_text().strip()
    client = redis.Redis.from_url(url)
    rows = []
    for n, (part, marker) in enumerate([("redis", "redis-server"), ("worker", "cli worker"),
                                        ("poller", "cli poller")]):
        # the worker holds the app's lease a moment after the site is live: a kill then
        # would time the lost-deployment path (lease_ttl), not the restart
        wait(lambda: _idle(client), 0.01, 60, "the worker to let the app go")
        old = up.child(marker)
        assert old is not None, f"no {part} under sluice up"
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        commit(up.repo, 1, f"after-{n}")
        wait(lambda: (pid := up.child(marker)) and pid != old, 0.01, 60, f"{part} again")
        if part == "redis":
            wait(lambda: _pong(url), 0.01, 60, "PONG on the same URL")
        back = time.monotonic() - killed
        wait(lambda: up.live(f"after-{n}"), 0.01, 120, "the commit to go live")
        rows.append((part, back, time.monotonic() - killed))
    return rows


def _idle(client: redis.Redis) -> bool:
    try:
        return not client.exists(keys.lease("site"))
    except redis.RedisError:
        return False


def _pong(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    starts, idle, loaded, recovered = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="sluice-up-") as tmp:
        base = Path(tmp)
        for r in range(args.rounds):
            up, took = started(base, args.files, 3 * r)
            starts.append(took)
            idle.append(up.stop())
            up, took = started(base, args.files, 3 * r + 1)
            starts.append(took)
            loaded.append(loaded_stop(up, args.files))
        up, took = started(base, args.files, 3 * args.rounds)
        starts.append(took)
        try:
            recovered = recoveries(up)
        finally:
            up.stop()
    median = statistics.median
    rows = [("start to first deployment live (baseline)", f"{median(starts):.2f} s", "", ""),
            ("stop, idle (baseline)", f"{median(idle):.2f} s", f"max {max(idle):.2f} s", ""),
            ("stop, a deployment running, 3 event streams", f"{median(loaded):.2f} s",
             f"max {max(loaded):.2f} s", verdict(max(loaded) <= STOP_PROMISE))]
    rows += [(f"kill -9 {part}: running again / a commit live", f"{back:.2f} s", f"{live:.2f} s", "")
             for part, back, live in recovered]
    console.print(results_table(f"sluice up, {args.files} files, {args.rounds} rounds",
                                ("measure", "median / figure", "max / then", "promise"), rows))


if __name__ == "__main__":
    main()
