"""Login-guessing benchmark: wrong deployment passwords against the built-in Git repository
(HTTP Basic auth) and FTP, with /healthz timed idle and under attack in the same run.

    .venv/bin/python bench/login_guessing.py [--seconds 40] [--samples 20]

1. /healthz, polled every 20 ms for 5 s with nothing else running: the baseline.
2. A burst of 60 wrong guesses sent at once from one address: how many were checked (401)
   or refused (429) and how fast, beside the promised spacing (from the 4th, 0.5 s doubling
   to 8 s per address and app: at most 7 checked in the first 8 s, then one per 8 s).
3. 60 guessers at once for --seconds, each guessing again as soon as it is answered (after
   Retry-After on a 429), /healthz polled throughout: checked guesses per second, overall
   and between the checks answered after 16 s (once spaced 8 s apart), beside the promised
   0.125/s.
4. A wrong password for a known app beside any password for an unknown one (Git over HTTP,
   FTP), each sample from a fresh loopback address (no failures behind it): median times.
`sluice api` and `sluice ftp` run as their own processes, as deployed; real redis-server.
The code measured is the tree this file sits in (copy it into an older tree to compare).
"""
from __future__ import annotations

import argparse
import ftplib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml
from common import ROOT, ms, pct, poll_health, results_table, wait
from rich.console import Console

from orchestrator.access.credentials import set_credentials
from orchestrator.config.settings import load_config
from orchestrator.runtime.embedded_redis import free_port, start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services

PASSWORD, WRONG = "s3cret-pass", "wrong-pass1"
GUESSERS, PROMISED = 60, 1 / 8
console = Console(width=150)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        redis_proc, redis_url = start_redis(base / "redis")
        try:
            cfg, api_url, ftp_port = _configure(base, redis_url)
            with _serving(cfg, redis_url, base, api_url, ftp_port):
                report(api_url, ftp_port, args.seconds, args.samples, Services.build(load_config(cfg)))
        finally:
            terminate(redis_proc)


def report(api_url: str, ftp_port: int, seconds: float, samples: int, services: Services) -> None:
    console.print(f"measuring the code in {ROOT} ...")
    idle = poll_health(api_url, lambda: None, 5.0)
    burst: dict = {}
    during_burst = poll_health(api_url, lambda: burst.update(_burst(api_url)), None)
    _forget_failures(services)
    sustained: dict = {}
    during_attack = poll_health(api_url, lambda: sustained.update(_attack(api_url, seconds)), None)
    git_times = _known_beside_unknown(lambda app, n: _git_guess(api_url, app, n), samples)
    ftp_times = _known_beside_unknown(lambda app, n: _ftp_guess(ftp_port, app, n), samples)
    health_rows = [(f"/healthz {name}", f"p50 {ms(pct(lat, .5))}", f"p99 {ms(pct(lat, .99))}",
                    f"max {ms(max(lat))}", f"{len(lat)} polls")
                   for name, lat in (("idle (baseline)", idle), ("during the burst", during_burst),
                                     ("during the attack", during_attack))]
    console.print(results_table("/healthz", ("measure", "p50", "p99", "max", "n"), health_rows))
    console.print(results_table("Wrong guesses from one address", ("measure", "figure", "promised"), [
        ("burst of 60: checked (401) / refused (429) / other", f"{burst[401]} / {burst[429]} / {burst['other']}",
         "<= 7 checked"),
        ("burst of 60: checked per second until all answered", f"{burst['rate']:.2f}/s", ""),
        (f"{GUESSERS} guessers for {seconds:.0f} s: checked per second", f"{sustained['rate']:.3f}/s", ""),
        ("... between checks after the first 16 s", f"{sustained['steady']:.3f}/s", f"{PROMISED:.3f}/s")]))
    console.print(results_table("Wrong guess: known app beside unknown app (median, n per row)",
                                ("measure", "known app", "unknown app", "difference"), [
        (f"Git over HTTP (n={samples})", ms(git_times[0]), ms(git_times[1]), ms(git_times[1] - git_times[0])),
        (f"FTP login (n={samples})", ms(ftp_times[0]), ms(ftp_times[1]), ms(ftp_times[1] - ftp_times[0]))]))


def _burst(api_url: str) -> dict:
    started = time.monotonic()
    with ThreadPoolExecutor(GUESSERS) as pool:
        answers = list(pool.map(lambda _: _status(api_url, "hello"), range(GUESSERS)))
    elapsed = time.monotonic() - started
    counts = {code: answers.count(code) for code in (401, 429)}
    return {**counts, "other": len(answers) - sum(counts.values()), "rate": counts[401] / elapsed}


def _attack(api_url: str, seconds: float) -> dict:
    started, checked = time.monotonic(), []
    deadline = started + seconds

    def guesser() -> None:
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < deadline:
                answer = client.get(_refs(api_url, "hello"), auth=("alice", WRONG))
                if answer.status_code == 401:
                    checked.append(time.monotonic() - started)
                elif answer.status_code == 429:
                    time.sleep(min(float(answer.headers.get("Retry-After", 1)),
                                   max(0.0, deadline - time.monotonic())))
    with ThreadPoolExecutor(GUESSERS) as pool:
        for future in [pool.submit(guesser) for _ in range(GUESSERS)]:
            future.result()
    elapsed = time.monotonic() - started
    steady = sorted(t for t in checked if t >= 16)
    spaced = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    return {"rate": len(checked) / elapsed, "steady": spaced}


def _known_beside_unknown(guess, samples: int) -> tuple[float, float]:
    """Median seconds of a wrong guess at the known app and at an unknown one, alternating
    which goes first, each pair from a fresh loopback address."""
    known, unknown = [], []
    for n in range(samples):
        for app in (("hello", "nope") if n % 2 else ("nope", "hello")):
            (known if app == "hello" else unknown).append(guess(app, n))
    return statistics.median(known), statistics.median(unknown)


def _git_guess(api_url: str, app: str, n: int) -> float:
    transport = httpx.HTTPTransport(local_address=_address(n))
    with httpx.Client(transport=transport, timeout=60) as client:
        started = time.monotonic()
        status = client.get(_refs(api_url, app), auth=("alice", WRONG)).status_code
        elapsed = time.monotonic() - started
    assert status == 401, status
    return elapsed


def _ftp_guess(port: int, app: str, n: int) -> float:
    client = ftplib.FTP()
    client.connect("127.0.0.1", port, timeout=60, source_address=(_address(n), 0))
    started = time.monotonic()
    try:
        client.login(f"{app}\\alice", WRONG)
    except ftplib.error_perm:
        pass
    elapsed = time.monotonic() - started
    client.close()
    return elapsed


def _address(n: int) -> str:
    return f"127.0.{1 + n // 250}.{2 + n % 250}"


def _status(api_url: str, app: str) -> int:
    return httpx.get(_refs(api_url, app), auth=("alice", WRONG), timeout=120).status_code


def _refs(api_url: str, app: str) -> str:
    return f"{api_url}/git/{app}.git/info/refs?service=git-upload-pack"


def _forget_failures(services: Services) -> None:
    for key in services.redis.scan_iter("sluice:auth:*"):
        services.redis.delete(key)


def _configure(base: Path, redis_url: str) -> tuple[Path, str, int]:
    api_port, ftp_port, passive = free_port(), free_port(), free_port()
    cfg = base / "sluice.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(base / "data"), "redis_url": redis_url,
        "api": {"listen": f"127.0.0.1:{api_port}"},
        "ftp": {"listen": f"127.0.0.1:{ftp_port}", "passive_ports": f"{passive}-{passive}"},
        "apps": {"hello": {"target": str(base / "sites" / "hello"), "source": {"type": "manual"}}}}))
    set_credentials(Services.build(load_config(cfg)), "hello", "alice", PASSWORD)
    return cfg, f"http://127.0.0.1:{api_port}", ftp_port


class _serving:
    """`sluice api` and `sluice ftp`, each its own process, once both answer."""

    def __init__(self, cfg: Path, redis_url: str, base: Path, api_url: str, ftp_port: int):
        self.cfg, self.base, self.api_url, self.ftp_port = cfg, base, api_url, ftp_port
        self.env = {**os.environ, "SLUICE_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}

    def __enter__(self):
        self.procs = [self._start(command) for command in ("api", "ftp")]
        wait(self._answering, 0.1, 30, "sluice api and sluice ftp")
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            terminate(proc)

    def _start(self, command: str) -> subprocess.Popen:
        with open(self.base / f"{command}.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(self.cfg),
                                     command], cwd=ROOT, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def _answering(self) -> bool:
        try:
            httpx.get(f"{self.api_url}/healthz").raise_for_status()
            with ftplib.FTP() as probe:
                probe.connect("127.0.0.1", self.ftp_port, timeout=2)
            return True
        except (httpx.HTTPError, OSError):
            return False


if __name__ == "__main__":
    main()
