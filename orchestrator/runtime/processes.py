"""Child processes of a Sluice service: tied to their parent's life, stopped gently."""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """(preexec_fn) Linux: the child gets SIGTERM if its parent dies, so nothing is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def terminate(proc: subprocess.Popen | None, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_all(procs: Iterable[subprocess.Popen], grace: float,
             clock: Callable[[], float] = time.monotonic) -> list[subprocess.Popen]:
    """SIGTERM to every process at once, one deadline `grace` seconds later for them all,
    then SIGKILL to the process group of each still running; returns those killed. Each
    must lead its own group (start_new_session): what it leaves behind goes with it."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = clock() + grace
    while any(proc.poll() is None for proc in running) and clock() < deadline:
        time.sleep(0.02)
    killed = [proc for proc in running if proc.poll() is None]
    for proc in running:
        kill_group(proc)
    return killed


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the process group `proc` leads, and reap `proc`: takes what it left
    behind too (a Celery worker's pool process, a poller's git)."""
    proc.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def exit_status(returncode: int) -> str:
    """How a process ended, for people: `exit code 3`, `killed by SIGKILL`."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"
