"""worker.build_concurrency: builds on one data dir take one of N slots (file locks, shared
by a worker's pool processes); one more waits until a slot is let go."""
from __future__ import annotations

import threading
import time

import pytest

from orchestrator.deploying.build import build_slot
from tests.helpers import Overlap


def test_no_more_builds_run_at_once_than_there_are_slots(tmp_path):
    overlap = Overlap()

    def one_build() -> None:
        with build_slot(tmp_path, 2), overlap.inside():
            time.sleep(0.3)

    builds = [threading.Thread(target=one_build) for _ in range(5)]
    for build in builds:
        build.start()
    for build in builds:
        build.join(30)

    assert overlap.most == 2 and overlap.now == 0


def test_a_slot_is_free_again_once_its_build_failed(tmp_path):
    with pytest.raises(RuntimeError):
        with build_slot(tmp_path, 1):
            raise RuntimeError("the build failed")
    entered = []

    def next_build() -> None:
        with build_slot(tmp_path, 1):
            entered.append(True)

    waiting = threading.Thread(target=next_build)
    waiting.start()
    waiting.join(5)

    assert entered == [True]
