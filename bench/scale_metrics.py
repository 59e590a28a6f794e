"""The first /metrics scrape of a fleet never scraped (issue 16).

    .venv/bin/python bench/scale_metrics.py [--apps 1000] [--runs 5]

N manual apps on one real redis-server, their histories recorded straight through the event
store (38 events an app, as bench/scale_fleet.py seeds them) and left as workers leave them:
views cached, and each app's figures and texts kept by `metrics.keep_current` (what the worker
runs after each deployment). A real `sluice api` process (uvicorn) is then scraped over HTTP:
its first GET /metrics (OpenMetrics, as Prometheus asks, then the text format), beside
/healthz in the same run, and beside the first scrape with nothing kept (the figures and texts
deleted: what a first scrape cost before the workers kept them), then a next scrape.
Everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import ROOT, ms, results_table, verdict, wait
from rich.console import Console
from scale_fleet import seeded

from orchestrator.core import keys
from orchestrator.observe import metrics
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services

RATIO_TARGET = 1.5          # bounded: the first scrape at most this many times a next one
PROMETHEUS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
console = Console(width=150)


def measure(args) -> list[tuple[str, str, str, str]]:
    apps, runs = getattr(args, "apps", 1000), getattr(args, "runs", 5)
    with tempfile.TemporaryDirectory(prefix="sluice-scale-metrics-") as tmp:
        root = Path(tmp)
        proc, url = start_redis(root / "redis")
        try:
            cfg, services = seeded(root, url, apps)
            names = list(services.config.apps)
            kept = _timed(lambda: metrics.keep_current(services, names)) / len(names)
            with _api(root, cfg, url, services) as base:
                return scrape_rows(services, base, apps, runs, kept)
        finally:
            terminate(proc)


def scrape_rows(services: Services, base: str, apps: int, runs: int,
                kept: float) -> list[tuple[str, str, str, str]]:
    with httpx.Client(timeout=120) as client:
        health = [_get(client, f"{base}/healthz") for _ in range(20 * runs)]
        first = _get(client, f"{base}/metrics", PROMETHEUS)
        first_text = _get(client, f"{base}/metrics")
        following = [_get(client, f"{base}/metrics", PROMETHEUS) for _ in range(runs)]
        nothing_kept = []
        for _ in range(runs):
            _forget(services)
            nothing_kept.append(_get(client, f"{base}/metrics", PROMETHEUS))
        # as the workers leave them again, for the next part of bench/scale.py
        metrics.keep_current(services, list(services.config.apps))
    h50, before, next_ = statistics.median(health), statistics.median(nothing_kept), statistics.median(following)
    return [
        (f"first GET /metrics of {apps:,} apps never scraped (OpenMetrics; texts kept by the workers)",
         ms(first), f"next scrapes {ms(next_)}; nothing kept {ms(before)} (medians of {runs})",
         f"<= {RATIO_TARGET}x a next scrape: {first / next_:.2f}x {verdict(first <= RATIO_TARGET * next_)}; "
         f"{before / first:.0f}x faster than nothing kept"),
        ("  the same, text format 0.0.4", ms(first_text), f"/healthz p50 {ms(h50)}",
         f"{first_text / h50:.0f}x /healthz"),
        ("  the next scrapes (median)", ms(next_), f"/healthz p50 {ms(h50)}", f"{next_ / h50:.0f}x /healthz"),
        ("  keep_current of every app from nothing (per app; a deployment's catches up a few events)",
         ms(kept), "", ""),
    ]


class _api:
    """A `sluice api` process serving the config, once /healthz answers."""

    def __init__(self, root: Path, cfg: Path, url: str, services: Services):
        self.root, self.cfg, self.url = root, cfg, url
        self.base = f"http://{services.config.api.listen}"

    def __enter__(self) -> str:
        with open(self.root / "api.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "--config", str(self.cfg), "api"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=die_with_parent,
                env={**os.environ, "SLUICE_REDIS_URL": self.url})
        wait(self._answers, 0.1, 60, "the API")
        return self.base

    def __exit__(self, *_) -> None:
        terminate(self.proc)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("the API exited: " + (self.root / "api.log").read_text(errors="replace")[-2000:])
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def _get(client: httpx.Client, url: str, accept: str | None = None) -> float:
    started = time.perf_counter()
    client.get(url, headers={"Accept": accept} if accept else {}).raise_for_status()
    return time.perf_counter() - started


def _forget(services: Services) -> None:
    for pattern in (keys.metrics_app("*"), keys.metrics_text("*", "*")):
        for key in services.redis.scan_iter(pattern):
            services.redis.delete(key)


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    rows = measure(parser.parse_args())
    console.print(results_table("The first /metrics scrape of a fleet (issue 16)",
                                ("measure", "Sluice", "baseline (same run)", "target"), rows))


if __name__ == "__main__":
    sys.exit(main())
