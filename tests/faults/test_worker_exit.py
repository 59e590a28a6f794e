"""How `sluice worker` ends, as a supervisor reads it (systemd, docker's restart policy,
`sluice up`): a stop a signal asked for is a clean one (0); a stop on an error Celery cannot
recover from is not, and says why in one line, where a supervisor's log shows it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from orchestrator.core.urls import sanitize_url
from orchestrator.runtime.processes import die_with_parent, kill_group

pytestmark = pytest.mark.faults


def test_a_worker_refused_by_redis_for_want_of_its_password_exits_non_zero_saying_so(rig_factory):
    rig = rig_factory()
    rig.configure({})
    without_password = re.sub(r"//[^/@]*@", "//", rig.redis_url)

    worker = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "--config", str(rig.config_path), "worker"],
        env={**os.environ, "SLUICE_REDIS_URL": without_password}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=die_with_parent)
    try:
        _, stderr = worker.communicate(timeout=60)
    finally:
        kill_group(worker)      # its pool too, if it never ends

    assert worker.returncode != 0, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"config error: Redis at {sanitize_url(rig.redis_url)} refused the password")
    assert "SLUICE_REDIS_URL" in last and "Traceback" not in stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_worker_stopped_by_a_signal_exits_zero(rig_factory, sig):
    rig = rig_factory()
    rig.configure({})
    worker = rig.start_worker()

    os.killpg(worker.proc.pid, sig)     # as a terminal's Ctrl-C or systemd reach the whole group

    assert worker.proc.wait(30) == 0, worker.log_path.read_text()
