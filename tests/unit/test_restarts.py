"""How `sluice up` tends its children: restarts with backoff, giving up on a tight loop, and
stopping them all with one deadline. Real (tiny) processes; time as the policy is given."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.core.errors import TransientError
from orchestrator.runtime.processes import exit_status, stop_all
from orchestrator.runtime.restarts import RestartPolicy, Restarts
from orchestrator.runtime.supervisor import Child, tend
from tests.helpers import wait_for

QUICK = RestartPolicy(base=0.01, maximum=0.05, settled=60, give_up_after=3)


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.PIPE, text=True)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_child_dying_soon_after_each_start_waits_longer_each_time_then_is_given_up():
    restarts = Restarts(RestartPolicy(base=1, maximum=30, settled=60, give_up_after=5), random.Random(7))

    delays = [restarts.after_death(ran_for=2) for _ in range(6)]

    for delay, ceiling in zip(delays, [1, 2, 4, 8, 16], strict=False):
        assert delay is not None and ceiling / 2 <= delay <= ceiling
    assert delays[5] is None


def test_a_child_that_ran_a_good_while_before_dying_starts_its_backoff_afresh():
    restarts = Restarts(RestartPolicy(base=1, maximum=30, settled=60, give_up_after=5), random.Random(7))
    for _ in range(5):
        restarts.after_death(ran_for=1)

    delay = restarts.after_death(ran_for=60)

    assert delay is not None and 0.5 <= delay <= 1 and restarts.in_a_row == 1


@pytest.mark.parametrize("returncode, said", [(3, "exit code 3"), (0, "exit code 0"),
                                              (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")])
def test_an_exit_is_told_as_its_code_or_the_signal_that_killed_it(returncode, said):
    assert exit_status(returncode) == said


def test_a_killed_child_is_reaped_said_so_and_started_again():
    said: list[str] = []
    stop = threading.Event()
    child = Child("sleeper", lambda: python("import time; time.sleep(60)"), Restarts(QUICK))
    child.start(0.0)
    first = child.proc
    first.kill()

    def say(line: str) -> None:
        said.append(line)
        stop.set() if "started again" in line else None

    assert tend([child], stop, say) == 0
    assert first.returncode == -9 and not running(first.pid)
    assert said[0].startswith(f"sleeper (pid {first.pid}) killed by SIGKILL after ")
    assert "; starting it again in 0.0" in said[0] and said[0].endswith("s (restart 1 in a row)")
    assert said[1:] == [f"sleeper started again (pid {child.proc.pid})"] and running(child.proc.pid)
    stop_all([child.proc], 1)


def test_a_child_dying_in_a_tight_loop_is_given_up_naming_it_and_how_it_ended():
    said: list[str] = []
    child = Child("broken", lambda: python("raise SystemExit(3)"), Restarts(QUICK))
    child.start(time.monotonic())

    assert tend([child], threading.Event(), said.append) == 1
    deaths = [line for line in said if "started again" not in line]
    assert len(deaths) == 4 and all(line.startswith("broken (pid ") for line in deaths)
    assert all("exit code 3" in line for line in deaths)
    assert said[-1].endswith("it died 4 times in a row, each within 60s: giving up, stopping sluice")


def test_stop_all_kills_with_its_group_only_what_outlives_the_shared_grace():
    stubborn = python("import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)")
    grandchild = int(stubborn.stdout.readline())        # ignores SIGTERM too, as inherited
    polite = python("import time; time.sleep(60)")

    killed = stop_all([stubborn, polite], grace=1.0)

    assert killed == [stubborn]
    assert polite.returncode == -signal.SIGTERM and stubborn.returncode == -signal.SIGKILL
    wait_for(lambda: not running(grandchild), timeout=5, what="the group to be gone")     # SIGKILL lands soon


def test_a_child_that_cannot_start_is_tried_again_and_given_up_on_saying_why():
    said: list[str] = []

    def launch() -> subprocess.Popen:
        raise TransientError("port 6379 is taken: Redis keeps its address, so waits for it")
    child = Child("redis", launch, Restarts(QUICK))          # down, due at once

    assert tend([child], threading.Event(), said.append) == 1
    assert len(said) == 4 and all(line.startswith("redis could not start: port 6379 is taken") for line in said)
    assert said[-1].endswith("giving up, stopping sluice")
