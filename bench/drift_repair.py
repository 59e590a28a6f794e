"""Drift-repair benchmark: a live site's target removed or pointed elsewhere by hand, under
two running `sluice poller` processes, and how long until it shows the active release again,
beside the drift_check interval it is promised within.

    .venv/bin/python bench/drift_repair.py [--interval 2] [--trials 12]

1. Baseline, same run: pollers with drift_check 0 (off); the target is removed and watched
   for three intervals: it stays missing, as it did before drift checks.
2. Pollers with drift_check --interval: --trials changes (removed and pointed elsewhere in
   turn) at random moments of a round; each is timed from the change until the target links
   to the active release again (watched every 2 ms). Promised: within one interval (plus the
   repair itself: a lease, a fenced switch and two events, a few ms).
Real redis-server, a real worker and real pollers; the code measured is this tree's.
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
from pathlib import Path

import yaml
from common import GIT_ENV, ROOT, make_repo, ms, pct, results_table, start_worker, verdict, wait
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.deploying.sync import sync_now
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services

APP = "site"
REPAIR_ALLOWANCE = 0.25     # seconds beyond the interval a repair itself may take
console = Console(width=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=2.0, help="drift_check, seconds")
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-drift-") as tmp:
        base = Path(tmp)
        redis_proc, url = start_redis(base / "redis")
        procs: list[subprocess.Popen] = []
        try:
            repo = base / "repo"
            make_repo(repo, {"index.html": b"<h1>live</h1>"})
            config = configure(base, url, repo, 0)
            procs.append(start_worker(config, url, base / "worker.log", "--concurrency", "1"))
            services = Services.build(load_config(config))
            target, release = deploy(services)
            baseline = unrepaired(base, url, config, target, args.interval)
            configure(base, url, repo, args.interval)
            procs += [start_poller(config, url, base / f"poller-{n}.log") for n in (1, 2)]
            times = [trial(target, release, base, n, args.interval) for n in range(args.trials)]
        finally:
            for proc in procs:
                terminate(proc)
            terminate(redis_proc)
    report(args.interval, baseline, times)


def configure(base: Path, url: str, repo: Path, interval: float) -> Path:
    cfg = base / "sluice.yaml"
    source = {"type": "git", "url": str(repo), "branch": "master", "poll_interval": "10m"}
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(base / "data"), "redis_url": url, "drift_check": interval,
        "apps": {APP: {"layout": "site", "target": str(base / "sites" / APP), "source": source}}}))
    return cfg


def deploy(services: Services) -> tuple[Path, str]:
    deployment_id = sync_now(services, APP).deployment_id
    wait(lambda: services.projections.app(APP).deployments[deployment_id].terminal, 0.05, 60,
         "the first deployment")
    active = services.projections.app(APP).active
    assert active is not None and active.release, "the first deployment did not go live"
    return services.config.apps[APP].target, active.release


def start_poller(cfg: Path, url: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg),
                                 "poller"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **GIT_ENV, "SLUICE_REDIS_URL": url},
                                preexec_fn=die_with_parent)


def unrepaired(base: Path, url: str, cfg: Path, target: Path, interval: float) -> bool:
    """With drift checks off: is the removed target still missing after three intervals?"""
    pollers = [start_poller(cfg, url, base / f"baseline-{n}.log") for n in (1, 2)]
    try:
        release = os.readlink(target)
        target.unlink()
        time.sleep(3 * interval)
        missing = not os.path.lexists(target)
    finally:
        for proc in pollers:
            terminate(proc)
    if missing:
        os.symlink(release, target)
    return missing


def trial(target: Path, release: str, base: Path, n: int, interval: float) -> float:
    """Change the target at a random moment and time its repair."""
    wait(lambda: os.path.islink(target) and os.readlink(target) == release, 0.01, 60, "a repair")
    time.sleep(random.uniform(0, interval))
    started = time.monotonic()
    if n % 2:
        elsewhere = base / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        os.symlink(elsewhere, base / "link")
        os.replace(base / "link", target)
    else:
        target.unlink()
    wait(lambda: os.path.islink(target) and os.readlink(target) == release, 0.002,
         10 * interval + 30, "the target to be repaired")
    return time.monotonic() - started


def report(interval: float, baseline: bool, times: list[float]) -> None:
    worst = max(times)
    rows = [
        ("drift checks off: removed target after 3 intervals",
         "still missing" if baseline else "put back (!)", "-", "-"),
        (f"time to repair, median of {len(times)}", ms(statistics.median(times)), ms(interval), ""),
        ("time to repair, 90th percentile", ms(pct(times, 0.9)), ms(interval), ""),
        ("time to repair, worst", ms(worst), f"{ms(interval)} + {ms(REPAIR_ALLOWANCE)}",
         verdict(worst <= interval + REPAIR_ALLOWANCE)),
    ]
    console.print(results_table("drift repaired within one check interval",
                                ("measure", "figure", "promised", "verdict"), rows))


if __name__ == "__main__":
    main()
