"""Fault tests: each test gets its own redis-server and its own worker processes, so it can
kill, restart and starve them without disturbing the session's shared infrastructure."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

from orchestrator.config.settings import load_config
from orchestrator.runtime import embedded_redis
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import die_with_parent, kill_group, terminate
from orchestrator.runtime.services import Services
from tests.helpers import GitRepo, wait_for, write_config


class Worker:
    """A `sluice worker` in its own process group, so SIGKILL takes its prefork child too."""

    def __init__(self, rig: Rig, number: int, plain_celery: bool = False):
        self.log_path = rig.root / "logs" / f"worker-{number}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        env = {**os.environ, "SLUICE_REDIS_URL": rig.redis_url, "SLUICE_CONFIG": str(rig.config_path),
               "SLUICE_VISIBILITY_TIMEOUT": str(rig.visibility_timeout)}
        argv = ([str(Path(sys.executable).with_name("celery")), "-A", "workers.celery_app", "worker",
                 "-Q", "deploy", "--concurrency", "1", "--loglevel", "INFO"] if plain_celery else
                [sys.executable, "-m", "orchestrator.cli", "--config", str(rig.config_path),
                 "worker", "--concurrency", "1"])
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent)
        self.started = time.monotonic()

    def wait_ready(self, timeout: float = 60) -> float:
        wait_for(lambda: "ready." in self.log_path.read_text() or self.proc.poll() is not None,
                 timeout=timeout, interval=0.02, what="the worker to start")
        assert self.proc.poll() is None, self.log_path.read_text()
        return time.monotonic() - self.started

    def kill(self) -> None:
        """kill -9 of the whole process group (main process and pool child)."""
        kill_group(self.proc)
        self._log.close()

    def stop(self) -> None:
        """SIGTERM to the group while its leader lives (so the group id is still ours)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Rig:
    """One test's private world: a redis-server (AOF on), a config, workers, repositories."""

    def __init__(self, root: Path, visibility_timeout: float):
        self.root = root
        self.visibility_timeout = visibility_timeout
        self.redis_dir = root / "redis"
        self.redis_proc, self.redis_url = start_redis(self.redis_dir)
        self.redis_port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])
        self.config_path = root / "sluice.yaml"
        self.data_dir = root / "var"
        self.workers: list[Worker] = []

    def configure(self, apps: dict, **settings) -> Services:
        write_config(self.config_path, self.data_dir, apps, self.redis_url, **settings)
        return Services.build(load_config(self.config_path))

    def repo(self, name: str = "repo") -> GitRepo:
        return GitRepo(self.root / name)

    def target(self, app: str) -> Path:
        return self.root / "sites" / app

    def start_worker(self, wait: bool = True, plain_celery: bool = False) -> Worker:
        """`sluice worker`, or `celery -A workers.celery_app worker` with `plain_celery`."""
        worker = Worker(self, len(self.workers) + 1, plain_celery)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def workers_state(self, lines: int = 30) -> str:
        """Which workers still run, and the end of each one's log: a deployment that does not
        end says whether a worker died under it."""
        return "\n".join(
            f"worker {n}: {'running' if w.proc.poll() is None else f'exited {w.proc.returncode}'},"
            f" log {w.log_path} ends:\n" + "\n".join(w.log_path.read_text().splitlines()[-lines:])
            for n, w in enumerate(self.workers, 1))

    def stop_redis(self) -> None:
        """SIGTERM: redis-server flushes its AOF and exits."""
        terminate(self.redis_proc)

    def restart_redis(self) -> None:
        """Same port, same files. (free_port probes without SO_REUSEADDR, so right after a
        stop it calls the port busy and moves elsewhere: test_redis_restart shows that bug;
        here the probe is made as redis-server itself binds.)"""
        with mock.patch.object(embedded_redis, "free_port", _free_port_as_redis_binds):
            self.redis_proc, url = start_redis(self.redis_dir, port=self.redis_port)
        assert url == self.redis_url, f"redis came back on another address: {url}"

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        terminate(self.redis_proc)


def _free_port_as_redis_binds(preferred: int | None = None) -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", preferred or 0))
        return s.getsockname()[1]


@pytest.fixture
def rig_factory(tmp_path):
    rigs: list[Rig] = []

    def make(visibility_timeout: float = 3.0) -> Rig:
        rig = Rig(tmp_path, visibility_timeout)
        rigs.append(rig)
        return rig
    yield make
    for rig in rigs:
        rig.close()


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.faults)
