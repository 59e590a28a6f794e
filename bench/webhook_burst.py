"""Webhook-burst benchmark: 200 distinct signed GitHub pushes delivered at once to `sluice api`,
beside one delivery at a time and /healthz idle, in the same run.

    .venv/bin/python bench/webhook_burst.py [--pushes 200] [--singles 10]

1. --singles pushes, each delivered alone after its commit: the answer's median (baseline).
2. /healthz polled every 20 ms for 3 s with nothing else running, and --pushes GET /healthz sent
   at once (baselines: what the server takes for that many connections, with no hook work).
3. --pushes commits, then one delivery for each, all sent at once in a shuffled order, /healthz
   polled throughout: answers that are not 202, the answers' p50 / p99 / max (GitHub gives up
   on a delivery after 10 s and does not retry), and /healthz's p99 beside the idle one.
4. Whether the newest commit is what ends up live, and how long after the burst.
`sluice api` and `sluice worker` run as their own processes, as deployed; real redis-server;
the app's source is a github-type source on a local repository (head checks run `git`).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml
from common import ROOT, git, make_repo, ms, pct, poll_health, results_table, start_worker, verdict, wait
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.runtime.embedded_redis import free_port, start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services

SECRET = "bench-webhook-secret-0123456789"
TARGET_P99, TARGET_HEALTH_P99 = 1.0, 0.1
console = Console(width=150)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--singles", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        redis_proc, redis_url = start_redis(base / "redis")
        try:
            repo = base / "repo"
            make_repo(repo, {"index.html": b"<h1>0</h1>"})
            cfg, api_url = _configure(base, redis_url, repo)
            worker = start_worker(cfg, redis_url, base / "worker.log")
            api = _start_api(cfg, redis_url, base, api_url)
            try:
                report(api_url, repo, Services.build(load_config(cfg)), args.pushes, args.singles)
            finally:
                terminate(api)
                terminate(worker)
        finally:
            terminate(redis_proc)


def report(api_url: str, repo: Path, services: Services, pushes: int, singles: int) -> None:
    console.print(f"measuring the code in {ROOT} ...")
    alone = []
    with httpx.Client(timeout=60) as client:
        for n in range(singles):
            alone.append(_deliver(client, api_url, f"single-{n}", _commit(repo, f"single {n}"))[1])
            _until_live(services, git(repo, "rev-parse", "HEAD"))
    idle = poll_health(api_url, lambda: None, 3.0)
    floor = _healthz_burst(api_url, pushes)
    revisions = [_commit(repo, f"push {n}") for n in range(pushes)]
    answers: list[tuple[int, float]] = []
    during = poll_health(api_url, lambda: answers.extend(_burst(api_url, revisions)), None)
    burst_over = time.monotonic()
    live_after = _until_live(services, revisions[-1]) - burst_over
    latencies = [seconds for _, seconds in answers]
    errors = sum(status != 202 for status, _ in answers)
    console.print(results_table(f"{pushes} distinct pushes delivered at once", (
        "measure", "figure", "baseline", "target", ""), [
        ("answers other than 202", str(errors), "", "0", verdict(errors == 0)),
        ("answer p50", ms(pct(latencies, .5)),
         f"alone: {ms(statistics.median(alone))}; {pushes} /healthz at once: {ms(pct(floor, .5))}", "", ""),
        ("answer p99", ms(pct(latencies, .99)), f"{pushes} /healthz at once: {ms(pct(floor, .99))}",
         f"<= {ms(TARGET_P99)}", verdict(pct(latencies, .99) <= TARGET_P99)),
        ("answer max", ms(max(latencies)), "", "< 10 s (GitHub's limit)", verdict(max(latencies) < 10)),
        ("/healthz p99 meanwhile", ms(pct(during, .99)), f"idle: {ms(pct(idle, .99))}",
         f"<= {ms(TARGET_HEALTH_P99)}", verdict(pct(during, .99) <= TARGET_HEALTH_P99)),
        ("newest commit live, after the burst", f"{live_after:.2f} s", "", "yes", verdict(True))]))


def _burst(api_url: str, revisions: list[str]) -> list[tuple[int, float]]:
    """Every delivery at once, in a shuffled order."""
    order = list(enumerate(revisions))
    random.Random(7).shuffle(order)
    host = urlsplit(api_url).netloc
    return _send_at_once(api_url, [_raw_post(host, "/hooks/github/site", *_signed_push(f"burst-{n}", revision))
                                   for n, revision in order])


def _healthz_burst(api_url: str, count: int) -> list[float]:
    """As many GET /healthz at once: what the server takes for that many connections alone."""
    request = f"GET /healthz HTTP/1.1\r\nHost: {urlsplit(api_url).netloc}\r\nConnection: close\r\n\r\n"
    return [seconds for _, seconds in _send_at_once(api_url, [request.encode()] * count)]


def _send_at_once(api_url: str, requests: list[bytes]) -> list[tuple[int, float]]:
    """Each request on a connection of its own, all at once, from one event loop speaking
    plain HTTP/1.1: a client library's own work per request (httpx: milliseconds of CPU) would
    be timed instead of the API's, as would threads of this process contending for the GIL."""
    address = urlsplit(api_url)

    async def send(request: bytes) -> tuple[int, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(request)
        status = int((await reader.readline()).split()[1])
        await reader.read()                     # until the API closes (Connection: close)
        writer.close()
        return status, time.monotonic() - started

    async def send_all() -> list[tuple[int, float]]:
        return list(await asyncio.gather(*(send(request) for request in requests)))
    return asyncio.run(send_all())


def _raw_post(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Connection: close",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _deliver(client: httpx.Client, api_url: str, delivery: str, revision: str) -> tuple[int, float]:
    body, headers = _signed_push(delivery, revision)
    started = time.monotonic()
    answer = client.post(f"{api_url}/hooks/github/site", content=body, headers=headers)
    return answer.status_code, time.monotonic() - started


def _signed_push(delivery: str, revision: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": "refs/heads/master", "after": revision}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
                  "X-Hub-Signature-256": signature, "Content-Type": "application/json"}


def _commit(repo: Path, message: str) -> str:
    (repo / "index.html").write_text(f"<h1>{message}</h1>")
    git(repo, "commit", "--quiet", "-am", message)
    return git(repo, "rev-parse", "HEAD")


def _until_live(services: Services, revision: str) -> float:
    def live() -> bool:
        active = services.projections.app("site").active
        return active is not None and active.revision == revision
    wait(live, 0.02, 120, f"{revision[:12]} to go live")
    return time.monotonic()


def _configure(base: Path, redis_url: str, repo: Path) -> tuple[Path, str]:
    port = free_port()
    cfg = base / "sluice.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(base / "data"), "redis_url": redis_url,
        "api": {"listen": f"127.0.0.1:{port}"},
        "apps": {"site": {"layout": "site", "target": str(base / "sites" / "site"), "source": {
            "type": "github", "url": str(repo), "branch": "master", "secret": SECRET}}}}))
    return cfg, f"http://127.0.0.1:{port}"


def _start_api(cfg: Path, redis_url: str, base: Path, api_url: str) -> subprocess.Popen:
    with open(base / "api.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "api"],
                                cwd=ROOT, env={**os.environ, "SLUICE_REDIS_URL": redis_url,
                                               "PYTHONPATH": str(ROOT)},
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def answering() -> bool:
        try:
            return httpx.get(f"{api_url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False
    wait(answering, 0.1, 30, "sluice api")
    return proc


if __name__ == "__main__":
    main()
