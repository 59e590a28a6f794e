"""Per-task work independent of the number of apps (issue 16).

    .venv/bin/python bench/scale_apps.py [--apps 1000]

(a) The first deployment of N apps (git sources on local repositories holding one small
    file; all queued at once) beside N deployments of one app (N commits, deployed one after
    another), each by a fresh `sluice worker` of concurrency 1 on one real redis-server.
    Figures: worker time per deployment (Celery's `succeeded in`, summed) and wall-clock.
    Target: ratio <= 1.2; and one app's last 100 deployments beside its first 100 (its cost
    must not grow with its history: ratio <= 1.2).
(b) What a task pays for its config at 1, N and 5N apps: before, load_config and
    Services.build at every task; now, LiveConfig.current() and FollowedServices (a stat).
(c) load_config itself at 1, N and 5N apps, beside the same read with the collector running
    (settings._load, what load_config was before it paused the collector).
Everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from common import git, git_source, make_repo, ms, results_table, start_worker, wait, write_config
from rich.console import Console

from orchestrator.config import settings
from orchestrator.config.live import LiveConfig
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import terminate
from orchestrator.runtime.services import FollowedServices, Services

# a deployment's own task (a task sent twice for one deployment ends as 'nothing to do')
SUCCEEDED = re.compile(r"Task sluice\.deploy\[[^\]]+\] succeeded in ([0-9.e-]+)s: 'DeploymentSucceeded'")
RATIO_TARGET = 1.2
SITE = b"<h1>hello</h1>\n"
console = Console(width=150)


def measure(args) -> list[tuple[str, str, str, str]]:
    apps = getattr(args, "apps", 1000)
    with tempfile.TemporaryDirectory(prefix="sluice-scale-apps-") as tmp:
        root = Path(tmp)
        proc, url = start_redis(root / "redis")
        try:
            fleet = first_deployments(root / "fleet", url, apps)
            redis.Redis.from_url(url).flushall()
            one = one_app(root / "one", url, apps)
        finally:
            terminate(proc)
        rows = deployment_rows(apps, fleet, one)
        rows += config_rows(root / "configs", url, apps)
    return rows


def first_deployments(base: Path, url: str, apps: int) -> dict:
    """N apps, each its own copy of one repository, all queued at once."""
    template = base / "template"
    revision = make_repo(template, {"index.html": SITE})
    sources = {}
    for i in range(apps):
        shutil.copytree(template, base / "repos" / f"r{i}", symlinks=True)
        sources[f"app-{i}"] = git_source(base / "repos" / f"r{i}", "0")
    cfg = write_config(base, url, sources)
    services = Services.build(settings.load_config(cfg, {"SLUICE_REDIS_URL": url}))
    log = base / "worker.log"
    worker = start_worker(cfg, url, log)
    try:
        started = time.perf_counter()
        for name in sources:
            request_deployment(services, name, revision, "manual")
        times = wait(lambda: t if len(t := task_times(log)) >= apps else None, 0.2, 60 * 60,
                     f"{apps} first deployments")
        wall = time.perf_counter() - started
    finally:
        terminate(worker)
    failed = [n for n in sources if services.projections.app(n).active is None]
    if failed:
        raise RuntimeError(f"{len(failed)} apps not deployed, e.g. {failed[0]}: see {log}")
    return {"times": times, "wall": wall}


def one_app(base: Path, url: str, deployments: int) -> dict:
    """One app, N commits, each deployed as the branch's head once committed (queued at once
    they would supersede each other)."""
    repo = base / "repo"
    make_repo(repo, {"index.html": SITE})
    cfg = write_config(base, url, {"app-0": git_source(repo, "0")})
    services = Services.build(settings.load_config(cfg, {"SLUICE_REDIS_URL": url}))
    log = base / "worker.log"
    worker = start_worker(cfg, url, log)
    try:
        started = time.perf_counter()
        for i in range(deployments):
            (repo / "index.html").write_text(f"<h1>hello {i}</h1>\n")
            git(repo, "commit", "--quiet", "-am", f"c{i}")
            d = request_deployment(services, "app-0", git(repo, "rev-parse", "HEAD"), "manual").deployment_id
            ended = wait(lambda: (v := services.projections.app("app-0").deployments[d]).terminal and v,
                         0.002, 120, f"deployment {d}")
            if ended.status != "success":
                raise RuntimeError(f"deployment {d}: {ended.status}: {ended.message}")
        wall = time.perf_counter() - started
        times = wait(lambda: t if len(t := task_times(log)) >= deployments else None, 0.05, 30,
                     "the worker's last log line")
    finally:
        terminate(worker)
    return {"times": times, "wall": wall}


def task_times(log: Path) -> list[float]:
    return [float(t) for t in SUCCEEDED.findall(log.read_text(errors="replace"))]


def deployment_rows(apps: int, fleet: dict, one: dict) -> list[tuple[str, str, str, str]]:
    ratio = sum(fleet["times"]) / sum(one["times"])
    return [
        (f"{apps:,} apps' first deployments: worker time per deployment (mean; median)",
         f"{ms(statistics.mean(fleet['times']))}; {ms(statistics.median(fleet['times']))}",
         f"{ms(statistics.mean(one['times']))}; {ms(statistics.median(one['times']))} "
         f"({apps:,} deployments of one app)",
         f"ratio {ratio:.2f} <= {RATIO_TARGET}: {'met' if ratio <= RATIO_TARGET else 'NOT met'}"),
        history_row(one["times"]),
        (f"{apps:,} apps' first deployments: wall-clock (deployments/min)",
         f"{fleet['wall']:.1f} s ({apps / fleet['wall'] * 60:.0f}/min)",
         f"{one['wall']:.1f} s ({apps / one['wall'] * 60:.0f}/min)", "(one after another: includes waiting)"),
    ]


def history_row(times: list[float]) -> tuple[str, str, str, str]:
    """Whether one app's deployment costs more as its history grows: its last deployments
    beside its first ones, in the same run."""
    n = min(100, len(times) // 2)
    first, last = statistics.median(times[:n]), statistics.median(times[-n:])
    ratio = last / first
    return (f"one app: worker time per deployment, median of its last {n} vs its first {n}",
            ms(last), ms(first) + f" (its first {n})",
            f"ratio {ratio:.2f} <= {RATIO_TARGET}: {'met' if ratio <= RATIO_TARGET else 'NOT met'}")


def config_rows(base: Path, url: str, apps: int) -> list[tuple[str, str, str, str]]:
    rows = []
    for n in (1, apps, 5 * apps):
        (base / str(n)).mkdir(parents=True)
        cfg = write_config(base / str(n), url, {f"app-{i}": git_source(base / "repos" / f"r{i}", "0")
                                                for i in range(n)})
        # written a minute ago, as a running worker's config is: a file younger than its
        # mtime's tick is read again at each look (config/live.py)
        os.utime(cfg, (time.time() - 60,) * 2)
        env = {"SLUICE_REDIS_URL": url}
        live = FollowedServices(LiveConfig(cfg, env).current)
        live()
        now = best(live, 200 if n < 5000 else 50)
        before = best(lambda: Services.build(settings.load_config(cfg, env)), 3)
        rows.append((f"config per task, {n:,} app(s): LiveConfig (a stat) vs load_config + Services.build",
                     ms(now), ms(before) + " (before: every task)", f"{before / now:,.0f}x less"))
    for n in (1, apps, 5 * apps):
        cfg = base / str(n) / "sluice.yaml"
        paused = best(lambda: settings.load_config(cfg, {}), 3)
        running = best(lambda: settings._load(cfg, {}), 3)
        rows.append((f"load_config itself, {n:,} app(s): collector paused vs running (before)",
                     ms(paused), ms(running), f"{(1 - paused / running) * 100:.0f}% less"))
    return rows


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    rows = measure(parser.parse_args())
    console.print(results_table("Per-task work and the number of apps (issue 16)",
                                ("measure", "Sluice", "baseline (same run)", "target"), rows))


if __name__ == "__main__":
    sys.exit(main())
