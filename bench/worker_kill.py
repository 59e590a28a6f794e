"""kill -9 of a worker mid-deployment: time from the kill to the deployment's end, beside
the target (lease_ttl + 5 s) and beside the same kill against workers of the tree before the
reaper (the broker's visibility timeout and kombu's restore scan decide there).

    .venv/bin/python bench/worker_kill.py [--runs 3] [--lease-ttl 30]
        [--visibility-timeout 300] [--baseline COMMIT | --no-baseline]

Each run: two `sluice worker`s (each its own process group), a deployment whose fetch over
ssh (tests/servers/fake_ssh.py) is held until the first worker has started it, kill -9 of
that worker's group (main process and pool child), the hold lifted, then the clock runs
until the deployment ends. The baseline runs once (it takes the visibility timeout): its
workers come from COMMIT (default: the parent of the commit that added the reaper),
extracted with `git archive`; the events are written by this tree.
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
from pathlib import Path

import yaml
from common import GIT_ENV, ROOT, make_repo, results_table, run, wait
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import die_with_parent, kill_group, terminate
from orchestrator.runtime.services import Services

console = Console(width=150)
APP = "held"
FAKE_SSH = ROOT / "tests" / "servers" / "bin"


class Worker:
    def __init__(self, tree: Path, cfg: Path, env: dict, log: Path):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "worker"],
                cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent)
        wait(lambda: "ready." in log.read_text(errors="replace") or self.proc.poll() is not None,
             0.05, 120, "a worker")
        if self.proc.poll() is not None:
            raise RuntimeError("worker exited:\n" + log.read_text(errors="replace")[-3000:])

    def kill(self) -> None:
        kill_group(self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def kill_to_end(base: Path, tree: Path, lease_ttl: float, visibility_timeout: float) -> float:
    """One run in `base` with workers of `tree`: seconds from kill -9 to the deployment's end."""
    base.mkdir(parents=True)
    redis_proc, redis_url = start_redis(base / "redis")
    workers: list[Worker] = []
    try:
        head = make_repo(base / "repo", {"index.html": b"<h1>after the kill</h1>\n"})
        key = base / "keys" / "deploy_ed25519"
        key.parent.mkdir()
        key.write_text("not a real key\n")
        key.chmod(0o600)
        cfg = base / "sluice.yaml"
        cfg.write_text(yaml.safe_dump({
            "data_dir": str(base / "data"), "redis_url": redis_url, "lease_ttl": lease_ttl,
            "apps": {APP: {"layout": "site", "target": str(base / "sites" / APP), "source": {
                "type": "git", "url": f"ssh://git@ssh.sluice.test{base / 'repo'}",
                "branch": "master", "ssh_key": str(key), "poll_interval": 0}}}}))
        env = {**os.environ, **GIT_ENV, "SLUICE_REDIS_URL": redis_url,
               "SLUICE_VISIBILITY_TIMEOUT": str(visibility_timeout),
               "SLUICE_TEST_PYTHON": sys.executable,
               "PATH": os.pathsep.join([str(FAKE_SSH), os.environ.get("PATH", "")])}
        services = Services.build(load_config(cfg, env))
        hold = key.parent / "hold"
        hold.touch()
        workers.append(Worker(tree, cfg, env, base / "worker-1.log"))
        d = request_deployment(services, APP, head, "manual").deployment_id
        wait(lambda: (key.parent / "ssh.log").exists(), 0.01, 60, "the fetch to start")
        workers.append(Worker(tree, cfg, env, base / "worker-2.log"))
        workers[0].kill()
        killed_at = time.monotonic()
        hold.unlink()
        wait(lambda: services.projections.app(APP).deployments[d].terminal, 0.05,
             visibility_timeout + 120, "the deployment to end")
        return time.monotonic() - killed_at
    finally:
        for worker in workers:
            worker.stop()
        terminate(redis_proc)


def before_reaper() -> str:
    added = run(["git", "log", "--diff-filter=A", "--format=%H", "--",
                 "orchestrator/deploying/reaper.py"], ROOT).splitlines()
    if not added:
        raise SystemExit("the reaper is not committed yet: give --baseline COMMIT")
    return run(["git", "rev-parse", f"{added[-1]}^"], ROOT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--visibility-timeout", type=float, default=300.0)
    parser.add_argument("--baseline", help="commit whose workers give the baseline")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    target = args.lease_ttl + 5
    with tempfile.TemporaryDirectory(prefix="sluice-bench-kill-") as tmp:
        figures = [kill_to_end(Path(tmp) / f"run-{n}", ROOT, args.lease_ttl,
                               args.visibility_timeout) for n in range(args.runs)]
        rows = [("kill -9 -> deployment ended, this tree (reaper)",
                 f"{statistics.median(figures):.1f} s (max {max(figures):.1f} s, n={len(figures)})",
                 f"<= {target:.0f} s", "PASS" if max(figures) <= target else "FAIL")]
        if not args.no_baseline:
            commit = args.baseline or before_reaper()
            old = Path(tmp) / "old-tree"
            old.mkdir()
            subprocess.run(f"git archive {commit} | tar -x -C {old}", shell=True, cwd=ROOT,
                           check=True)
            seconds = kill_to_end(Path(tmp) / "baseline", old, args.lease_ttl,
                                  args.visibility_timeout)
            rows.append((f"kill -9 -> deployment ended, {commit[:10]} (broker only)",
                         f"{seconds:.1f} s (n=1)",
                         f"visibility timeout {args.visibility_timeout:.0f} s", ""))
    console.print(results_table(
        f"A worker killed mid-deployment, a second one running (lease_ttl {args.lease_ttl:.0f} s)",
        ("measure", "figure", "target", "verdict"), rows))


if __name__ == "__main__":
    main()
