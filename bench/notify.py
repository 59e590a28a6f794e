"""Notifications benchmark: `sluice notifier` (its own process, as deployed) against a local
webhook receiver, beside baselines measured in the same run.

    .venv/bin/python bench/notify.py [--events 200] [--apps 40] [--deployments 8]

1. Latency: --events events appended one every 20 ms; each one's time from its append to its
   arrival at the receiver, p50 / p90, beside a bare POST to the same receiver (the floor).
2. Throughput: --apps apps' events told to a receiver taking 200 ms per request: deliveries
   per second with `notifier.concurrency` (8), beside the ideal 8 / 0.2 s = 40/s.
3. Deployments: --deployments one-file changes of an app deployed while the notifier tells
   the slow receiver every step of them (and the throughput load of 2 runs beside them),
   their median time beside the same deployments with no notifier running.
Real redis-server, `sluice worker` and `sluice notifier` processes; a git source.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml
from common import GIT_ENV, ROOT, git, make_repo, ms, pct, results_table, start_worker, wait
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.deploying.sync import sync_now
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services

STEPS = ["DeploymentQueued", "DeploymentStarted", "DeploymentSucceeded"]
SLOW = 0.2


class Receiver:
    """Records each delivery's arrival (monotonic), answering 200 after `delay`."""

    def __init__(self):
        self.arrived: dict[str, float] = {}
        self.delay = 0.0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):      # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.arrived.setdefault(self.headers.get("X-Sluice-Delivery") or "", time.monotonic())
                time.sleep(receiver.delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                del body

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_notifier(cfg: Path, redis_url: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "notifier",
                                 "--name", "bench"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "SLUICE_REDIS_URL": redis_url}, preexec_fn=die_with_parent)


def queued(app: str, n: int) -> ev.RevisionRejected:
    """An event to tell that sets no worker going (a DeploymentQueued with no Celery message
    is sent again by the reapers: the worker would then be busy with the bench's events)."""
    return ev.RevisionRejected(app=app, at=time.time(), revision=f"{n:040x}", deployment_id=f"b{n}",
                               reason="bench")


def group_ready(services: Services) -> bool:
    try:
        return bool(services.redis.xinfo_groups("sluice:feed"))
    except Exception:
        return False


def feed_id(services: Services, app: str, version: int) -> str:
    """The feed's id of the app's event `version`: the newest feed entry may be another's (the
    notifier appends NotificationDelivered meanwhile)."""
    for entry_id, fields in services.redis.xrevrange("sluice:feed", count=50):
        if fields[b"app"] == app.encode() and int(fields[b"n"]) == version:
            return entry_id.decode()
    raise RuntimeError(f"{app} #{version} is not among the feed's last 50 entries")


def latency(services: Services, hook: Receiver, count: int) -> tuple[list[float], list[float]]:
    appended: dict[str, float] = {}
    for n in range(count):
        version = services.store.append("fast", [queued("fast", n)], ANY_VERSION)
        appended[feed_id(services, "fast", version) + ":0"] = time.monotonic()
        time.sleep(0.02)
    wait(lambda: all(d in hook.arrived for d in appended), 0.05, 120, "every delivery")
    floor = []
    with httpx.Client() as client:
        for _ in range(count):
            started = time.monotonic()
            client.post(hook.url, content=b"{}")
            floor.append(time.monotonic() - started)
    return [hook.arrived[d] - at for d, at in appended.items()], floor


def throughput(services: Services, hook: Receiver, apps: int) -> tuple[int, float]:
    before, started = len(hook.arrived), time.monotonic()
    for n in range(apps):
        services.store.append(f"slow{n}", [queued(f"slow{n}", 1), queued(f"slow{n}", 2)], ANY_VERSION)
    wait(lambda: len(hook.arrived) - before >= 2 * apps, 0.05, 600, "the slow deliveries")
    return 2 * apps, time.monotonic() - started


def deployments(services: Services, repo: Path, count: int, tag: str) -> list[float]:
    times = []
    for n in range(count):
        (repo / "index.html").write_text(f"<h1>{tag} {n}</h1>")
        git(repo, "commit", "--quiet", "-am", f"{tag} {n}")
        started = time.monotonic()
        d = sync_now(services, "site").deployment_id
        wait(lambda: (v := services.projections.app("site").deployments.get(d)) and v.terminal, 0.01, 120,
             "the deployment")
        times.append(time.monotonic() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--deployments", type=int, default=8)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sluice-bench-notify-"))
    fast, slow = Receiver(), Receiver()
    slow.delay = SLOW
    repo = base / "repo"
    make_repo(repo, {"index.html": b"<h1>0</h1>"})
    hook = {"type": "webhook", "url": slow.url, "events": STEPS}
    apps = {"site": {"layout": "site", "target": str(base / "sites" / "site"), "notify": [hook],
                     "source": {"type": "git", "url": str(repo), "poll_interval": "1h"}},
            "fast": {"layout": "site", "target": str(base / "sites" / "fast"),
                     "notify": [{"type": "webhook", "url": fast.url, "events": ["RevisionRejected"]}]},
            **{f"slow{n}": {"layout": "site", "target": str(base / "sites" / f"slow{n}"),
                            "notify": [{**hook, "events": ["RevisionRejected"]}]} for n in range(args.apps)}}
    redis_proc, redis_url = start_redis(base / "redis")
    cfg = base / "sluice.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(base / "data"), "redis_url": redis_url, "apps": apps}))
    services = Services.build(load_config(cfg, {**os.environ, **GIT_ENV}))
    worker = start_worker(cfg, redis_url, base / "worker.log")
    try:
        deployments(services, repo, 2, "warm-up")
        alone = deployments(services, repo, args.deployments, "alone")
        notifier = start_notifier(cfg, redis_url, base / "notifier.log")
        try:
            wait(lambda: group_ready(services), 0.05, 60, "the notifier's group")
            lat, floor = latency(services, fast, args.events)
            told, seconds = throughput(services, slow, args.apps)
            load = threading.Thread(target=lambda: throughput(services, slow, args.apps))
            load.start()
            beside = deployments(services, repo, args.deployments, "beside")
            load.join()
        finally:
            terminate(notifier)
    finally:
        terminate(worker)
        terminate(redis_proc)
    ideal = 8 / SLOW
    rows = [("event to delivery, p50", ms(pct(lat, 0.5)), ms(pct(floor, 0.5)) + " (a bare POST)"),
            ("event to delivery, p90", ms(pct(lat, 0.9)), ms(pct(floor, 0.9)) + " (a bare POST)"),
            (f"deliveries/s, {SLOW * 1000:.0f} ms receiver, concurrency 8", f"{told / seconds:.1f}/s",
             f"{ideal:.0f}/s (ideal)"),
            ("deployment, median", ms(statistics.median(beside)), ms(statistics.median(alone)) + " (no notifier)"),
            ("deployment, max", ms(max(beside)), ms(max(alone)) + " (no notifier)")]
    Console().print(results_table(f"Notifications ({args.events} events, {told} slow deliveries, "
                                  f"{args.deployments} deployments)",
                                  ("measure", "figure", "baseline"), rows))
    print(json.dumps({"ratio_deploy_median": statistics.median(beside) / statistics.median(alone)}))


if __name__ == "__main__":
    main()
