"""`sluice up`: the embedded default in one process tree.

Starts Redis (unless the config names one), then a worker, a poller, the API (and the FTP
server when ftp.listen is set) as child processes,
restarts a child that dies, and stops everything cleanly on Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config.settings import SluiceConfig
from orchestrator.core.backoff import backoff_delay
from orchestrator.core.files import write_whole
from orchestrator.core.urls import sanitize_url
from orchestrator.runtime.embedded_redis import start_redis, wait_for_redis
from orchestrator.runtime.processes import die_with_parent, terminate

RESTART_BASE, RESTART_MAX = 1.0, 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)


class Supervisor:
    def __init__(self, config: SluiceConfig, config_path: Path, say=print):
        self.config, self.config_path, self.say = config, config_path, say
        self.stop = threading.Event()
        self.redis_proc: subprocess.Popen | None = None
        self.url_file = config.data_dir / "redis" / "url"

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        url = self._redis()
        env = {**os.environ, "SLUICE_CONFIG": str(self.config_path), "SLUICE_REDIS_URL": url}
        me = [sys.executable, "-m", "orchestrator.cli"]
        children = [Child("worker", me + ["worker"]), Child("poller", me + ["poller"]),
                    Child("api", me + ["api"])]
        if self.config.ftp.listen:
            children.append(Child("ftp", me + ["ftp"]))
        try:
            for child in children:
                self._start(child, env)
            self.say(f"sluice is up (Redis {sanitize_url(url)}, API http://{self.config.api.listen}); "
                     "Ctrl-C stops it")
            while not self.stop.wait(0.5):
                for child in children:
                    self._restart_if_dead(child, env)
        finally:
            self._shutdown(children)
        return 0

    def _redis(self) -> str:
        if self.config.redis_url:
            wait_for_redis(self.config.redis_url)
            return self.config.redis_url
        previous = _port_of(self.url_file)
        self.redis_proc, url = start_redis(self.config.data_dir / "redis", previous)
        write_whole(self.url_file, url + "\n", mode=0o600)      # it holds the password
        self.say(f"embedded Redis {sanitize_url(url)} (AOF under {self.url_file.parent})")
        return url

    def _start(self, child: Child, env: dict) -> None:
        child.proc = subprocess.Popen(child.argv, env=env, start_new_session=True,
                                      preexec_fn=die_with_parent)
        child.started_at = time.monotonic()

    def _restart_if_dead(self, child: Child, env: dict) -> None:
        if child.proc is None or child.proc.poll() is None:
            return
        if time.monotonic() - child.started_at > RESTART_MAX * 2:
            child.restarts = 0      # it ran for a good while: start the backoff afresh
        child.restarts += 1
        delay = backoff_delay(child.restarts, RESTART_BASE, RESTART_MAX)
        self.say(f"{child.name} exited with code {child.proc.returncode}; restarting in {delay:.0f}s")
        if not self.stop.wait(delay):
            self._start(child, env)

    def _shutdown(self, children: list[Child]) -> None:
        self.say("stopping ...")
        for child in children:
            terminate(child.proc)
        if self.redis_proc:
            terminate(self.redis_proc)
            self.url_file.unlink(missing_ok=True)
        self.say("stopped")


def _port_of(url_file: Path) -> int | None:
    try:
        return int(url_file.read_text().strip().rsplit(":", 1)[1].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
