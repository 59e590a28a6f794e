"""Coalesced runs (core.coalesce) on a real Redis: what concurrent triggers of one app's head
check rely on."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.core.coalesce import Coalesced

KEY = "sluice:test:coalesce"


class World:
    """Something that moves on (a branch head) and the runs that look at it."""

    def __init__(self):
        self.version, self.runs, self.running, self.overlaps = 0, 0, 0, 0
        self.lock = threading.Lock()

    def look(self) -> int:
        with self.lock:
            self.runs += 1
            self.running += 1
            self.overlaps += self.running > 1
            seen = self.version
        time.sleep(0.01)            # a head check takes a while
        with self.lock:
            self.running -= 1
        return seen


def test_every_request_of_a_burst_is_answered_by_a_run_that_started_after_it_arrived(clean_redis):
    world, checks = World(), Coalesced(clean_redis, KEY)

    def request(_) -> tuple[int, int]:
        with world.lock:
            world.version += 1          # what this request is about happened before it
            arrived = world.version
        seen, _ = checks.request(world.look, str, int)
        return arrived, seen

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(request, range(200)))

    assert all(seen >= arrived for arrived, seen in answers)
    assert world.overlaps == 0 and world.runs < 100, world.runs


def test_a_run_that_fails_fails_its_own_request_and_the_next_request_runs(clean_redis):
    checks = Coalesced(clean_redis, KEY)

    def broken() -> int:
        raise OSError("source unreachable")
    with pytest.raises(OSError):
        checks.request(broken, str, int)

    assert checks.request(lambda: 7, str, int) == (7, True)


def test_a_run_whose_process_died_holds_the_key_only_until_its_lock_expires(clean_redis):
    stuck = Coalesced(clean_redis, KEY, run_timeout=0.3)
    assert stuck._begin() is not None           # and never finishes

    assert Coalesced(clean_redis, KEY).request(lambda: 1, str, int) == (1, True)
