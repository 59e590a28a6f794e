"""Hosts of an app standing on one machine (issue 19): each a real `sluice worker --host NAME`
process with a data_dir of its own (SLUICE_DATA_DIR), sharing no folder with the others or
with the central worker; the API they fetch snapshots from served in the test's process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis

from orchestrator.deploying.task_queue import host_queue, priority_lists
from orchestrator.runtime.processes import die_with_parent, terminate
from tests.helpers import wait_for


class HostWorker:
    def __init__(self, name: str, root: Path, config_path: Path, redis_url: str):
        self.name, self.config_path, self.redis_url = name, config_path, redis_url
        self.data_dir, self.log = root / f"{name}-data", root / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> HostWorker:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "--config", str(self.config_path), "worker",
                 "--host", self.name],
                env={**os.environ, "SLUICE_DATA_DIR": str(self.data_dir), "SLUICE_REDIS_URL": self.redis_url},
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        said = len(self.log.read_text()) if self.log.exists() else 0
        wait_for(lambda: "ready." in self.log.read_text()[said:] or self.proc.poll() is not None,
                 timeout=60, what=f"host {self.name}'s worker to start")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def kill(self) -> None:
        """As kill -9 does: no goodbye, its task unacknowledged."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)


def forget_host_queues(client: redis.Redis, hosts: list[str]) -> None:
    """What an earlier test left queued for hosts of the same names."""
    for host in hosts:
        for key in priority_lists(host_queue(host)):
            client.delete(key)
