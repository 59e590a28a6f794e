"""A live app's target changed by hand under two running `sluice poller` processes: removed
and pointed elsewhere it is put back, once, with the events recorded; a real folder put in
its place is reported and never touched."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orchestrator.core import keys
from orchestrator.runtime.processes import die_with_parent, terminate
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import sync_and_wait

pytestmark = pytest.mark.faults

APP = "drifty"
CHECK = "1s"


def start_poller(rig, number: int) -> subprocess.Popen:
    log = open(rig.root / "logs" / f"poller-{number}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "--config", str(rig.config_path), "poller"],
        env={**os.environ, "SLUICE_REDIS_URL": rig.redis_url}, stdout=log,
        stderr=subprocess.STDOUT, preexec_fn=die_with_parent)


@pytest.fixture
def drifting(rig_factory):
    rig = rig_factory()
    repo = rig.repo()
    repo.commit(FUNCTION_APP)
    services = rig.configure({APP: git_app(repo, rig.target(APP))}, drift_check=CHECK)
    rig.start_worker()
    sync_and_wait(services, APP)
    pollers = [start_poller(rig, n) for n in (1, 2)]
    yield services, rig.target(APP), services.projections.app(APP).active.release
    for poller in pollers:
        terminate(poller)


def drift_events(services) -> list[tuple[str, str]]:
    return [(r.event.type, r.event.kind) for r in services.store.read(APP)
            if r.event.type in ("DriftDetected", "DriftRepaired")]


def repaired(target, release) -> bool:
    return os.path.islink(target) and os.readlink(target) == release


def test_a_removed_or_redirected_target_is_put_back_once_by_running_pollers(drifting, tmp_path):
    services, target, release = drifting
    target.unlink()
    wait_for(lambda: repaired(target, release), timeout=30, what="the removed target to be put back")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, target.with_name("tmp-link"))
    os.replace(target.with_name("tmp-link"), target)
    wait_for(lambda: repaired(target, release), timeout=30, what="the redirected target to be put back")

    wait_for(lambda: len(drift_events(services)) == 4, timeout=10, what="the repair's event")
    assert drift_events(services) == [("DriftDetected", "missing"), ("DriftRepaired", "missing"),
                                      ("DriftDetected", "elsewhere"), ("DriftRepaired", "elsewhere")]


def test_a_real_folder_in_the_targets_place_is_reported_and_left_as_it_is(drifting):
    services, target, release = drifting
    target.unlink()
    target.mkdir()
    (target / "index.html").write_text("put here by hand")

    wait_for(lambda: drift_events(services), timeout=30, what="the drift to be reported")
    rounds = {services.redis.get(keys.DRIFT_DUE)}
    wait_for(lambda: rounds.add(services.redis.get(keys.DRIFT_DUE)) or len(rounds) > 3,
             timeout=30, interval=0.1, what="three more rounds of drift checks")

    assert drift_events(services) == [("DriftDetected", "occupied")]
    assert not target.is_symlink() and (target / "index.html").read_text() == "put here by hand"
    assert services.projections.app(APP).drift.kind == "occupied"
