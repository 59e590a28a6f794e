"""Fleet views in one round trip (issue 16).

    .venv/bin/python bench/scale_fleet.py [--apps 1000] [--clients 50] [--requests 10]

N manual apps on one real redis-server, their deployments recorded straight through the
event store (as workers record them, about 38 events an app: 38k at 1,000 apps), their
views cached as the workers leave them; a real `sluice api` process (uvicorn).
(a) `--clients` concurrent clients, each `--requests` GETs in a row: `/healthz` (the
    baseline, same run, same clients), then `GET /api/apps?limit=N` (the whole fleet in one
    page), first with no event arriving, then with one event appended every 50 ms (each one
    makes the kept page stale). Target: /api/apps p50 <= 5x /healthz p50.
(b) `sluice apps --all` in a cold process beside `python -c pass`, and in process the views
    of N apps read at once (Projections.apps) beside one by one (Projections.app: what the
    fleet views did before).
    (No event arriving, the kept page is sent; with events, the apps that moved are read again
    and spliced into it: the feed says which.)
(c) The first /metrics scrape with nothing saved (no figures, no text) beside the scrape as it
    was before (every app the store ever saw, one app at a time; replicated here), with 10%
    more apps in the store than in the config (apps taken out of it); the first scrape of a
    restarted API (figures and each app's text saved) beside every family formatted at once
    from the saved figures (the scrape before the texts were kept); then a next scrape.
(d) Redis replies parsed by hiredis (redis-py uses it when installed) beside redis-py's own
    parser: the events of every app read at once.
Everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis
import yaml
from common import ROOT, best, ms, pct, results_table, verdict, wait
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from redis._parsers.resp3 import _RESP3Parser
from redis.utils import HIREDIS_AVAILABLE
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core import keys, replies
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.core.event_store import EventStore
from orchestrator.observe import app_figures, metrics
from orchestrator.runtime.embedded_redis import free_port, start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services

RATIO_TARGET = 5
DEPLOYMENTS = 9             # per app: 4 events each, and 2 ChangeDetected: 38 events an app
console = Console(width=150)


def measure(args) -> list[tuple[str, str, str, str]]:
    apps, clients, requests = (getattr(args, k, d) for k, d in
                               (("apps", 1000), ("clients", 50), ("requests", 10)))
    with tempfile.TemporaryDirectory(prefix="sluice-scale-fleet-") as tmp:
        root = Path(tmp)
        proc, url = start_redis(root / "redis")
        try:
            cfg, services = seeded(root, url, apps)
            rows = api_rows(root, cfg, url, services, apps, clients, requests)
            rows += cli_rows(cfg, url, services, apps)
            rows += metrics_rows(services, apps)
            rows += parser_rows(services, url)
        finally:
            terminate(proc)
    return rows


def seeded(root: Path, url: str, apps: int) -> tuple[Path, Services]:
    names = [f"app-{i:05}" for i in range(apps)]
    cfg = root / "sluice.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(root / "data"), "redis_url": url,
        "api": {"listen": f"127.0.0.1:{free_port()}", "reads": "loopback"},
        "apps": {name: {"target": str(root / "sites" / name)} for name in names}}))
    services = Services.build(load_config(cfg))
    retired = [f"retired-{i:05}" for i in range(apps // 10)]
    for name in names + retired:
        services.store.append(name, history(name), ANY_VERSION)
    services.projections.apps(names)            # as the workers leave them
    return cfg, services


def history(app: str) -> list[ev.Event]:
    events: list[ev.Event] = []
    for n in range(DEPLOYMENTS):
        dep, at = f"{app}-d{n}", 1_700_000_000.0 + n * 60
        if n % 4 == 0:
            events.append(ev.ChangeDetected(app=app, at=at, revision=f"r{n}", trigger="poll"))
        events += [
            ev.DeploymentQueued(app=app, at=at, deployment_id=dep, revision=f"r{n}", trigger="poll"),
            ev.DeploymentStarted(app=app, at=at + 1, deployment_id=dep, worker="w"),
            ev.SnapshotBuilt(app=app, at=at + 2, deployment_id=dep, snapshot=f"s{n}", files=3, bytes=9,
                             blobs_added=1, blobs_reused=2),
            ev.DeploymentSucceeded(app=app, at=at + 3, deployment_id=dep, snapshot=f"s{n}",
                                   release=f"/r/{dep}")]
    return events[:38]


# ---- (a) the API under 50 clients -----------------------------------------------------------

def api_rows(root: Path, cfg: Path, url: str, services: Services, apps: int, clients: int,
             requests: int) -> list[tuple[str, str, str, str]]:
    listen = services.config.api.listen
    base = f"http://{listen}"
    with open(root / "api.log", "wb") as log:
        api = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "api"],
                               stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=die_with_parent,
                               env={**os.environ, "SLUICE_REDIS_URL": url})
    try:
        wait(lambda: _answers(f"{base}/healthz"), 0.1, 60, "the API")
        page = f"{base}/api/apps?limit={apps}"
        alone = _timed_get(page)                               # the first read, nothing kept
        body = httpx.get(page, timeout=60).json()
        assert len(body) == apps and body[0]["active"], "the page holds every app, live"
        health = asyncio.run(_load(f"{base}/healthz", clients, requests))
        quiet = asyncio.run(_load(page, clients, requests))
        with _events_every(services, 0.05):
            busy = asyncio.run(_load(page, clients, requests))
        health_after = asyncio.run(_load(f"{base}/healthz", clients, requests))
    finally:
        terminate(api)
    h50 = statistics.median(health + health_after)
    n = f"{clients} clients x {requests}"
    return [
        (f"GET /api/apps?limit={apps} alone, nothing kept", ms(alone), "", ""),
        (f"/healthz p50 / p99 ({n})", f"{ms(h50)} / {ms(pct(health + health_after, 0.99))}", "", ""),
        (f"/api/apps p50 / p99, no event arriving ({n})", f"{ms(statistics.median(quiet))} / "
         f"{ms(pct(quiet, 0.99))}", f"/healthz p50 {ms(h50)}",
         f"<= {RATIO_TARGET}x: {statistics.median(quiet) / h50:.1f}x "
         f"{verdict(statistics.median(quiet) <= RATIO_TARGET * h50)}"),
        (f"/api/apps p50 / p99, an event every 50 ms ({n})", f"{ms(statistics.median(busy))} / "
         f"{ms(pct(busy, 0.99))}", f"/healthz p50 {ms(h50)}",
         f"<= {RATIO_TARGET}x: {statistics.median(busy) / h50:.1f}x "
         f"{verdict(statistics.median(busy) <= RATIO_TARGET * h50)}"),
    ]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _timed_get(url: str) -> float:
    started = time.perf_counter()
    httpx.get(url, timeout=120).raise_for_status()
    return time.perf_counter() - started


async def _load(url: str, clients: int, requests: int) -> list[float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        async def one_client() -> list[float]:
            latencies = []
            for _ in range(requests):
                started = time.perf_counter()
                (await client.get(url)).raise_for_status()
                latencies.append(time.perf_counter() - started)
            return latencies
        return [t for each in await asyncio.gather(*(one_client() for _ in range(clients))) for t in each]


class _events_every:
    """A thread appending a ChangeDetected to a random app every `seconds`."""

    def __init__(self, services: Services, seconds: float):
        self.services, self.seconds, self.stop = services, seconds, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        names = list(self.services.config.apps)
        while not self.stop.wait(self.seconds):
            app = random.choice(names)
            self.services.store.append(app, [ev.ChangeDetected(app=app, at=time.time(), revision="x",
                                                               trigger="poll")], ANY_VERSION)

    def __enter__(self):
        self.thread.start()

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()


# ---- (b) sluice apps and the views ---------------------------------------------------------

def cli_rows(cfg: Path, url: str, services: Services, apps: int) -> list[tuple[str, str, str, str]]:
    env = {**os.environ, "SLUICE_REDIS_URL": url, "COLUMNS": "200"}

    def cold(*cmd: str) -> float:
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env=env)
        return time.perf_counter() - started
    sluice = (sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "apps")
    every = statistics.median(cold(*sluice, "--all") for _ in range(3))
    first = statistics.median(cold(*sluice) for _ in range(3))
    bare = statistics.median(cold(sys.executable, "-c", "pass") for _ in range(3))
    names = list(services.config.apps)
    at_once = best(lambda: services.projections.apps(names))
    one_by_one = best(lambda: [services.projections.app(n) for n in names])
    return [
        (f"sluice apps --all, {apps} apps (cold process)", ms(every), f"python -c pass {ms(bare)}", ""),
        ("sluice apps (the first 100)", ms(first), f"python -c pass {ms(bare)}", ""),
        (f"views of {apps} apps: Projections.apps", ms(at_once), f"one by one {ms(one_by_one)}",
         f"{one_by_one / at_once:.1f}x faster"),
    ]


# ---- (c) the first /metrics scrape ---------------------------------------------------------

def metrics_rows(services: Services, apps: int) -> list[tuple[str, str, str, str]]:
    events = sum(services.store.versions(services.store.apps()).values())
    _forget_figures(services)
    before = _timed(lambda: _scrape_as_before(services))
    _forget_figures(services)
    first = _timed(lambda: metrics.exposition(services))
    restarted = Services.build(services.config)
    after_restart = _timed(lambda: metrics.exposition(restarted))
    at_once = _timed(lambda: _scrape_at_once(Services.build(services.config)))
    second = _timed(lambda: metrics.exposition(restarted))
    seen = len(services.store.apps())
    return [
        (f"first /metrics scrape, nothing saved, {events // 1000}k events, {apps} of {seen} apps "
         "configured", ms(first), f"as before {ms(before)}", f"{before / first:.1f}x faster"),
        ("first scrape of a restarted API (figures and texts saved)", ms(after_restart),
         f"all formatted at once {ms(at_once)}", f"< 1 s: {verdict(after_restart < 1)}, "
         f"{at_once / after_restart:.1f}x faster"),
        ("the next scrape (nothing new)", ms(second), "", ""),
    ]


def _forget_figures(services: Services) -> None:
    for pattern in (keys.metrics_app("*"), keys.metrics_text("*", "*")):
        for key in services.redis.scan_iter(pattern):
            services.redis.delete(key)


def _scrape_at_once(services: Services) -> bytes:
    """The scrape before each app's text was kept: every family of every app formatted."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.SluiceCollector(services))
    return generate_latest(registry)


# ---- (d) hiredis ------------------------------------------------------------------------------

def parser_rows(services: Services, url: str) -> list[tuple[str, str, str, str]]:
    after = {name: None for name in services.config.apps}

    def read_with(**options) -> float:
        store = EventStore(redis.Redis.from_url(url, **options))
        return best(lambda: store.read_many(after))
    hiredis = read_with()
    python = read_with(parser_class=_RESP3Parser)
    return [(f"read_many of {len(after)} apps' events (parsing the replies)", f"hiredis {ms(hiredis)}",
             f"redis-py's parser {ms(python)}", f"{python / hiredis:.1f}x faster"
             if HIREDIS_AVAILABLE else "hiredis not installed")]


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _scrape_as_before(services: Services) -> None:
    """What a scrape did before: every app the store ever saw, its figures and view read,
    caught up and saved one app at a time."""
    for app in services.store.apps():
        key = app_figures.app_state_key(app)
        raw = replies.value(services.redis.get(key))
        figures = app_figures.AppFigures.from_json(raw) if raw else app_figures.AppFigures()
        if figures.seen > services.store.version(app):
            figures = app_figures.AppFigures()
        new = services.store.read(app, after_id=figures.last_id)
        for r in new:
            app_figures.fold(figures, r)
        if new:
            services.redis.set(key, figures.to_json())
        services.projections.app(app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10)
    rows = measure(parser.parse_args())
    console.print(results_table("Fleet views and the number of apps (issue 16)",
                                ("measure", "Sluice", "baseline (same run)", "target"), rows))


if __name__ == "__main__":
    sys.exit(main())
