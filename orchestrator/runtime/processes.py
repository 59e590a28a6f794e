"""Child processes of a Sluice service: tied to their parent's life, stopped gently."""
from __future__ import annotations

import ctypes
import signal
import subprocess

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
