"""History in constant time (issue 16).

    .venv/bin/python bench/scale_history.py [--deployments 5000] [--runs 5]

Two apps on one real redis-server, their deployments recorded straight through the event
store (as workers record them: ChangeDetected, DeploymentQueued, DeploymentStarted,
SnapshotBuilt, DeploymentSucceeded, ReleasesPruned; the config's default events.keep_in_redis):
`ten` with 10 deployments, the baseline, and `big` with N.
(a) `sluice deployments APP` in a cold process (median of --runs, the two apps alternating):
    target big/ten <= 1.2.
(b) Redis memory of each app's keys (MEMORY USAGE of its stream and cached projection, every
    element counted): target big/ten <= 10; the feed (sluice:feed, shared by every app) is a
    window, shown with the events written for scale.
(c) In process, for where the time goes: a page of 20 at N beside the full replay
    (Projections.history) that `sluice deployments` did before.
Everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ms, results_table, verdict
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute
from orchestrator.core.history_pages import newest
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import terminate
from orchestrator.runtime.services import Services

console = Console()
BASELINE = 10


def record(services: Services, app: str, count: int) -> int:
    """`count` deployments as a worker records them; returns the events appended."""
    appended = 0
    ids = [f"20240101-{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}-{n:06x}" for n in range(count)]
    for n, dep in enumerate(ids):
        at, revision = 1_700_000_000.0 + n, f"{n:040x}"
        events = [ev.ChangeDetected(app=app, at=at, revision=revision, trigger="poll"),
                  ev.DeploymentQueued(app=app, at=at, deployment_id=dep, revision=revision, trigger="poll"),
                  ev.DeploymentStarted(app=app, at=at, deployment_id=dep, worker="celery@bench"),
                  ev.SnapshotBuilt(app=app, at=at, deployment_id=dep, snapshot=f"{n:064x}", files=40,
                                   bytes=90_000, blobs_added=1, blobs_reused=39, incremental=True, seconds=0.03),
                  ev.DeploymentSucceeded(app=app, at=at + 1, deployment_id=dep, snapshot=f"{n:064x}",
                                         release=f"/srv/releases/{app}/{dep}",
                                         steps={"validate": 0.001, "materialise": 0.01, "switch": 0.001})]
        if n >= 5:      # keep_releases 5: the worker lets the sixth newest go
            events.append(ev.ReleasesPruned(app=app, at=at + 1, releases=[f"/srv/releases/{app}/{ids[n - 5]}"]))
        execute(services.projections, app, lambda view, events=events: events)
        appended += len(events)
    return appended


def cli_seconds(config: Path, app: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(config), "deployments", app],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def memory(services: Services, app: str) -> int:
    return sum(services.redis.memory_usage(key, samples=0) or 0
               for key in (keys.app_events(app), keys.app_projection(app)))


def timed(work, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args) -> list[tuple[str, str, str, str]]:
    count, runs = getattr(args, "deployments", 5000), getattr(args, "runs", 5)
    with tempfile.TemporaryDirectory(prefix="sluice-scale-history-") as tmp:
        root = Path(tmp)
        proc, url = start_redis(root / "redis")
        try:
            apps = {name: {"target": str(root / "sites" / name), "source": {"type": "manual"}}
                    for name in ("ten", "big")}
            config = _config(root, url, apps)
            services = Services.build(load_config(config))
            record(services, "ten", BASELINE)
            written = record(services, "big", count)
            cli = {name: [] for name in ("ten", "big")}
            for _ in range(runs):
                for name in cli:
                    cli[name].append(cli_seconds(config, name))
            ten_cli, big_cli = statistics.median(cli["ten"]), statistics.median(cli["big"])
            ten_mem, big_mem = memory(services, "ten"), memory(services, "big")
            feed = services.redis.memory_usage(keys.FEED, samples=0) or 0
            feed_len = services.redis.xlen(keys.FEED)
            archived = list((root / "data" / "archive" / "big").glob("*.jsonl"))
            archived_kb = sum(p.stat().st_size for p in archived) / 1024
            page = timed(lambda: newest(services.projections, "big"), runs)
            replay = timed(lambda: services.projections.history("big"), max(1, runs // 2))
        finally:
            terminate(proc)
    return [
        (f"`sluice deployments` cold, {count:,} deployments vs {BASELINE}", ms(big_cli), ms(ten_cli),
         f"ratio {big_cli / ten_cli:.2f} <= 1.2 {verdict(big_cli / ten_cli <= 1.2)}"),
        (f"Redis memory of the app's keys, {count:,} deployments vs {BASELINE}", f"{big_mem / 1024:,.0f} KB",
         f"{ten_mem / 1024:,.0f} KB", f"ratio {big_mem / ten_mem:.1f} <= 10 {verdict(big_mem / ten_mem <= 10)}"),
        ("feed window (all apps; events written)", f"{feed_len:,} entries, {feed / 1024:,.0f} KB",
         f"{written + 6 * BASELINE:,} events", "a window, not a copy"),
        (f"archive of `big` ({count:,} deployments)", f"{len(archived)} files",
         f"{archived_kb:,.0f} KB", "on disk, not in Redis"),
        (f"in process: newest 20 of {count:,} vs full replay (before)", ms(page), ms(replay), "-"),
    ]


def _config(root: Path, url: str, apps: dict) -> Path:
    path = root / "sluice.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(root / "data"), "redis_url": url, "apps": apps}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployments", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    rows = measure(parser.parse_args())
    console.print(results_table("History in constant time (issue 16)",
                                ("measure", "Sluice", "baseline (same run)", "target"), rows))


if __name__ == "__main__":
    sys.exit(main())
