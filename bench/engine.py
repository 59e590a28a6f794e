"""Engine benchmark: a duplicated deploy task and a rollback, beside their targets.

    .venv/bin/python bench/engine.py [--runs 50]

1. A deploy task delivered again for a deployment that already ended (redelivery, double
   enqueue): worker time in-process (runner.run; the whole Celery task body, which re-reads
   the config) and in a real worker (Celery's `succeeded in` log line). Target <= 10 ms.
2. Rollback between two kept releases: rollback() in-process and `sluice rollback --to` as a
   subprocess, beside the start-up of `python -c pass` in the same run. Target <= 50 ms.
Real redis-server and Celery worker, a git repo of 200 files; all in a temp dir, removed.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, git, git_source, make_repo, ms, results_table, start_worker, wait, write_config
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.deploying.dispatch import enqueue
from orchestrator.deploying.rollback import rollback
from orchestrator.deploying.sync import sync_now
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import terminate
from orchestrator.runtime.services import Services
from workers import runner, tasks

APP, FILES, ROLLBACKS, CLI_RUNS = "site", 200, 20, 10
SUCCEEDED = re.compile(r"Task sluice\.deploy\[[^\]]+\] succeeded in ([0-9.e-]+)s: 'nothing to do")
IMPORTS = "import orchestrator.cli, orchestrator.deploying.rollback"     # what `sluice rollback` imports
CLI_SAYS = re.compile(r"rolled back to deployment .* in (\d+) ms")
console = Console(width=140)


def deploy(services: Services) -> str:
    """sync_now, deployed by the worker; the id of the (successful) deployment."""
    q = sync_now(services, APP)
    d = wait(lambda: (v := services.projections.app(APP).deployments[q.deployment_id]).terminal
             and v, 0.01, 120, f"deployment {q.deployment_id}")
    if d.status != "success":
        raise RuntimeError(f"deployment {d.id}: {d.status}: {d.message}")
    return d.id


def samples(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def duplicates(services: Services, ctx: runner.WorkerContext, did: str, log: Path,
               runs: int) -> dict:
    """The deploy task of `did` (ended) again: in-process, then enqueued to the worker one at
    a time, timed by Celery itself (`succeeded in`, from the worker's log)."""
    def logged() -> list[float]:
        return [float(m) for m in SUCCEEDED.findall(log.read_text(errors="replace"))]
    if not (said := runner.run(ctx, APP, did, 1)).startswith("nothing to do"):
        raise RuntimeError(f"deployment {did} is not a duplicate: {said}")
    r = {"runner": samples(lambda: runner.run(ctx, APP, did, 1), runs),
         "task": samples(lambda: tasks.deploy.run(APP, did, 1), runs),
         "config": samples(lambda: Services.build(load_config()), runs)}
    for i in range(runs):
        enqueue(services, APP, did)
        wait(lambda: len(logged()) > i, 0.002, 30, f"duplicate {i + 1} in the worker log")
    return {**r, "worker": logged()}


def rollbacks(services: Services, cfg: Path, ids: list[str]) -> dict:
    """Back and forth between two kept releases: in-process, then `sluice rollback --to`,
    each CLI run followed by the two start-up baselines, so load on the machine hits all."""
    turn = iter(range(ROLLBACKS))
    r = {"rollback": samples(lambda: rollback(services, APP, to=ids[next(turn) % 2]), ROLLBACKS),
         "cli": [], "cli_says": [], "python": [], "imports": []}
    for i in range(CLI_RUNS):
        cmd = [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "rollback", APP,
               "--to", ids[i % 2]]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        r["cli"].append(time.perf_counter() - t0)
        if done.returncode != 0 or not (m := CLI_SAYS.search(done.stdout)):
            raise RuntimeError(f"{cmd}: exit {done.returncode}\n{done.stdout}{done.stderr}")
        r["cli_says"].append(int(m.group(1)) / 1000)
        for key, code in (("python", "pass"), ("imports", IMPORTS)):
            r[key] += samples(lambda: subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                                                     check=True), 1)
    return r


def bench(base: Path, runs: int) -> dict:
    make_repo(base / "repo", {f"d{i // 20:02d}/page{i}.html": (b"<p>%d</p>\n" % i) * 50
                              for i in range(FILES)})
    redis_proc = worker = None
    try:
        redis_proc, url = start_redis(base / "redis")
        cfg, log = write_config(base, url, {APP: git_source(base / "repo", "1h")}), base / "worker.log"
        os.environ["SLUICE_CONFIG"] = str(cfg)      # what tasks.context() reads
        worker = start_worker(cfg, url, log)
        services = Services.build(load_config(cfg))
        first = deploy(services)
        (base / "repo" / "d00" / "page0.html").write_text("<p>changed</p>\n")
        git(base / "repo", "commit", "--quiet", "-am", "change")
        ids = [first, deploy(services)]             # ids[1]: live, ended
        ctx = runner.WorkerContext(services, SnapshotStore(services.config.data_dir / "store"),
                                   "bench")
        r = {**duplicates(services, ctx, ids[1], log, runs), **rollbacks(services, cfg, ids)}
        r["history"] = len(services.projections.app(APP).deployments)
        r["runner_late"] = samples(lambda: runner.run(ctx, APP, ids[1], 1), runs)
        return r
    finally:
        terminate(worker)
        terminate(redis_proc)


def row(label: str, values: list[float], baseline: str = "", target: float | None = None):
    med, p90 = statistics.median(values), sorted(values)[round(0.9 * (len(values) - 1))]
    if target is None:
        return label, ms(med), ms(p90), baseline, "", ""
    return (label, ms(med), ms(p90), baseline, f"<= {target * 1000:g} ms",
            "[green]PASS[/]" if med <= target else "[red]FAIL[/]")


def report(r: dict, runs: int) -> None:
    py = statistics.median(r["python"])
    rows = [row("duplicate: runner.run, in-process", r["runner"], target=0.010),
            row("duplicate: Celery task body, in-process", r["task"], target=0.010),
            row("  of which load_config() + Services.build", r["config"]),
            row("duplicate: real worker (Celery 'succeeded in')", r["worker"], target=0.010),
            row(f"duplicate: runner.run, {r['history']} deployments in history",
                r["runner_late"], target=0.010),
            row(f"rollback: rollback(), in-process ({ROLLBACKS})", r["rollback"], target=0.050),
            row(f"rollback: time the CLI reports ({CLI_RUNS})", r["cli_says"], target=0.050),
            row(f"rollback: `sluice rollback --to` wall ({CLI_RUNS})", r["cli"],
                f"python -c pass {ms(py)}"),
            row(f"  python -c '{IMPORTS}'", r["imports"], f"python -c pass {ms(py)}")]
    console.print(results_table(
        f"Sluice engine benchmark: {FILES}-file site, {runs} duplicate deliveries per method",
        ("measure", "median", "p90", "baseline", "target", "verdict"), rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="duplicate deliveries per method")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sluice-engine-"))
    try:
        results = bench(base, args.runs)
    finally:
        remove_tree(base)
    report(results, args.runs)


if __name__ == "__main__":
    main()
