"""`sluice up`: the embedded default in one process tree.

Starts Redis (unless the config names one), then a worker, a poller, the API (and the FTP
server when ftp.listen is set) as child processes, each leading its own process group.
A child that dies is reaped at once, said so (which one, how it ended) and started again
after a backoff (runtime/restarts.py): Redis on the same port with the same password and
files, so its URL and data stay. A child dying in a tight loop stops everything instead
(exit code 1). Ctrl-C / SIGTERM stops the children all at once, gives them STOP_GRACE
seconds together, kills the groups of those left, then stops Redis.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config.settings import SluiceConfig
from orchestrator.core.errors import SluiceError
from orchestrator.core.files import write_whole
from orchestrator.core.urls import sanitize_url
from orchestrator.runtime.embedded_redis import start_redis, wait_for_redis
from orchestrator.runtime.processes import die_with_parent, exit_status, kill_group, stop_all
from orchestrator.runtime.restarts import RestartPolicy, Restarts

TICK = 0.2                  # how soon a death is noticed
STOP_GRACE = 10.0           # for the children together after SIGTERM; Docker's default too
REDIS_GRACE = 5.0           # it writes its AOF out


@dataclass
class Child:
    name: str
    launch: Callable[[], subprocess.Popen]
    restarts: Restarts
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    due_at: float = field(default=0.0)      # when to start it again, while it is down

    def start(self, now: float) -> subprocess.Popen:
        self.proc, self.started_at = self.launch(), now
        return self.proc


class Supervisor:
    def __init__(self, config: SluiceConfig, config_path: Path, say=print,
                 policy: RestartPolicy | None = None, clock: Callable[[], float] = time.monotonic):
        self.config, self.config_path, self.say = config, config_path, say
        self.policy, self.clock = policy or RestartPolicy(), clock
        self.stop = threading.Event()
        self.url_file = config.data_dir / "redis" / "url"
        self.redis_port: int | None = None

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        children: list[Child] = []
        try:
            url = self._first_redis(children)
            env = {**os.environ, "SLUICE_CONFIG": str(self.config_path), "SLUICE_REDIS_URL": url}
            services = [self._child(name, env) for name in self._services()]
            children += services
            for child in services:
                child.start(self.clock())
            self.say(f"sluice is up (Redis {sanitize_url(url)}, API http://{self.config.api.listen}); "
                     "Ctrl-C stops it")
            return tend(children, self.stop, self.say, self.clock)
        finally:
            self._shutdown(children)

    def _services(self) -> list[str]:
        notifying = bool(self.config.notify) or any(a.notify for a in self.config.apps.values())
        return ["worker", "poller", "api"] + (["notifier"] if notifying else []) \
            + (["ftp"] if self.config.ftp.listen else [])

    def _child(self, name: str, env: dict) -> Child:
        argv = [sys.executable, "-m", "orchestrator.cli", name]

        def launch() -> subprocess.Popen:
            return subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=die_with_parent)
        return Child(name, launch, Restarts(self.policy))

    def _first_redis(self, children: list[Child]) -> str:
        if self.config.redis_url:
            wait_for_redis(self.config.redis_url)
            return self.config.redis_url
        redis = Child("redis", self._launch_redis, Restarts(self.policy))
        children.append(redis)
        redis.start(self.clock())
        url = self.url_file.read_text().strip()
        self.say(f"embedded Redis {sanitize_url(url)} (AOF under {self.url_file.parent})")
        return url

    def _launch_redis(self) -> subprocess.Popen:
        restarted = self.redis_port is not None
        proc, url = start_redis(self.config.data_dir / "redis",
                                self.redis_port or _port_of(self.url_file), exact=restarted)
        self.redis_port = _port_of_url(url)
        write_whole(self.url_file, url + "\n", mode=0o600)      # it holds the password
        return proc

    def _shutdown(self, children: list[Child]) -> None:
        self.say("stopping ...")
        began = self.clock()
        # Redis last: what the others do while stopping (events, acks) goes into it
        names = {c.proc: c.name for c in children if c.proc is not None and c.name != "redis"}
        for proc in stop_all(names, STOP_GRACE):
            self.say(f"{names[proc]} did not stop within {STOP_GRACE:.0f}s: killed")
        for redis in (c for c in children if c.name == "redis"):
            stop_all([redis.proc] if redis.proc else [], REDIS_GRACE)
            self.url_file.unlink(missing_ok=True)
        self.say(f"stopped in {self.clock() - began:.1f}s")


def tend(children: list[Child], stop: threading.Event, say: Callable[[str], None],
         clock: Callable[[], float] = time.monotonic) -> int:
    """Until `stop`: reap each child that died and start it again when its backoff is over.
    0 when stopped, 1 when a child died in a tight loop (its group is gone, the others run)."""
    while not stop.wait(TICK):
        for child in children:
            if child.proc is not None and child.proc.poll() is not None and not _died(child, say, clock):
                return 1
            if child.proc is None and clock() >= child.due_at and not stop.is_set() \
                    and not _restart(child, say, clock):
                return 1
    return 0


def _restart(child: Child, say: Callable[[str], None], clock: Callable[[], float]) -> bool:
    try:
        proc = child.start(clock())
    except SluiceError as exc:          # e.g. Redis' port taken meanwhile
        return _schedule(child, 0.0, f"{child.name} could not start: {exc}", say, clock)
    say(f"{child.name} started again (pid {proc.pid})")
    return True


def _died(child: Child, say: Callable[[str], None], clock: Callable[[], float]) -> bool:
    """Reaps it and its group; schedules the restart, or says why not (False)."""
    assert child.proc is not None
    proc, ran_for = child.proc, clock() - child.started_at
    kill_group(proc)
    child.proc = None
    how = f"{child.name} (pid {proc.pid}) {exit_status(proc.returncode)} after {ran_for:.1f}s"
    return _schedule(child, ran_for, how, say, clock)


def _schedule(child: Child, ran_for: float, how: str, say: Callable[[str], None],
              clock: Callable[[], float]) -> bool:
    delay = child.restarts.after_death(ran_for)
    if delay is None:
        say(f"{how}; it died {child.restarts.in_a_row} times in a row, each within "
            f"{child.restarts.policy.settled:.0f}s: giving up, stopping sluice")
        return False
    child.due_at = clock() + delay
    say(f"{how}; starting it again in {delay:.1f}s (restart {child.restarts.in_a_row} in a row)")
    return True


def _port_of(url_file: Path) -> int | None:
    try:
        return _port_of_url(url_file.read_text().strip())
    except (OSError, ValueError, IndexError):
        return None


def _port_of_url(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])
