"""Drift checks on a real Redis with the real worker: a target changed by a hand outside Sluice
is put back (or, when something real stands in its place, reported and left alone)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from orchestrator.api import create_app
from orchestrator.config.settings import load_config
from orchestrator.core.clock import FakeClock
from orchestrator.core.lease import Lease
from orchestrator.deploying.drift import check_app
from orchestrator.releases.removal import remove_tree
from orchestrator.runtime.services import Services
from orchestrator.triggers.drift_checks import DriftChecks
from tests.helpers import FUNCTION_APP, git_app
from tests.integration.flow import sync_and_wait, tree, wait_until_ended, wait_until_let_go
from tests.integration.test_metrics import LOCAL, LOOPBACK, sample, scrape


@pytest.fixture
def live(workspace):
    """The app `hello` with one deployment live: its services, target and active release."""
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    return services, workspace.target("hello"), services.projections.app("hello").active.release


def drift_events(services: Services) -> list:
    return [r.event for r in services.store.read("hello")
            if r.event.type in ("DriftDetected", "DriftRepaired")]


def test_a_removed_target_is_switched_back_to_the_active_release_and_both_steps_recorded(live):
    services, target, release = live
    target.unlink()

    assert check_app(services, "hello") == "repaired"

    assert os.readlink(target) == release
    detected, repaired = drift_events(services)
    assert (detected.kind, detected.repair, detected.target) == ("missing", "switch", str(target))
    assert (repaired.kind, repaired.release, repaired.how) == ("missing", release, "switched back")
    assert services.projections.app("hello").drift is None


def test_a_target_pointed_elsewhere_is_switched_back(live, tmp_path):
    services, target, release = live
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target.unlink()
    os.symlink(elsewhere, target)

    check_app(services, "hello")

    assert os.readlink(target) == release
    assert [(e.type, e.kind) for e in drift_events(services)] == [
        ("DriftDetected", "elsewhere"), ("DriftRepaired", "elsewhere")]
    assert str(elsewhere) in drift_events(services)[0].detail


def test_a_real_folder_in_the_targets_place_is_reported_once_naming_it_and_never_touched(live):
    services, target, release = live
    target.unlink()
    target.mkdir()
    (target / "index.html").write_text("put here by hand")

    check_app(services, "hello")
    check_app(services, "hello")

    assert (target / "index.html").read_text() == "put here by hand" and not target.is_symlink()
    [detected] = drift_events(services)
    assert (detected.kind, detected.repair) == ("occupied", "none") and str(target) in detected.detail
    assert services.projections.app("hello").drift.kind == "occupied"

    (target / "index.html").unlink()
    target.rmdir()          # moved away: now it is only missing, and that is repaired
    check_app(services, "hello")

    assert os.readlink(target) == release
    assert [e.kind for e in drift_events(services)] == ["occupied", "missing", "missing"]


def test_a_release_gone_from_disk_is_redeployed_from_its_snapshot(live):
    services, target, release = live
    remove_tree(release)

    check_app(services, "hello")

    [detected] = drift_events(services)
    assert (detected.kind, detected.repair) == ("release gone", "redeploy")
    redeployed = wait_until_ended(services, "hello", detected.deployment_id)
    wait_until_let_go(services, "hello")
    assert redeployed.status == "success" and redeployed.trigger == "redeploy"
    assert tree(target) == FUNCTION_APP
    check_app(services, "hello")
    assert drift_events(services)[-1].how == f"deployment {detected.deployment_id} went live"
    assert services.projections.app("hello").drift is None


def test_no_repair_is_made_while_a_deployment_holds_the_apps_lease(live):
    services, target, release = live
    target.unlink()

    with Lease(services.redis, "hello", "a deployment"):
        outcome = check_app(services, "hello")

    assert "lease" in outcome and not os.path.lexists(target)
    assert drift_events(services) == []
    check_app(services, "hello")
    assert os.readlink(target) == release


def test_the_repair_switch_is_fenced_so_an_older_lease_holder_cannot_switch_after_it(live):
    services, target, release = live
    target.unlink()
    check_app(services, "hello")

    fence = target.with_name(f".{target.name}.sluice-fence")
    assert int(fence.read_text()) == int(services.redis.get("sluice:lease:hello:fence"))


def test_each_round_is_run_by_one_poller_of_several(workspace, live):
    services, target, release = live
    clock = FakeClock()
    workspace.configure({"hello": git_app(workspace.repo(), target)}, drift_check="30s")
    pollers = [DriftChecks(Services.build(load_config(workspace.config_path), clock)) for _ in range(2)]
    target.unlink()

    first, second = pollers[0].tick(), pollers[1].tick()

    assert first == ({"hello": "repaired"}, 30.0) and second == (None, 30.0)
    clock.advance(31)
    assert pollers[1].tick()[0] == {"hello": "ok"} and pollers[0].tick()[0] is None


def test_drift_shows_in_the_api_the_metrics_and_sluice_apps(workspace, live):
    services, target, release = live
    target.unlink()
    target.mkdir()
    check_app(services, "hello")

    client = TestClient(create_app(services), base_url=LOCAL, client=LOOPBACK)
    drift = client.get("/api/apps/hello").json()["drift"]
    assert (drift["kind"], drift["repair"]) == ("occupied", "none") and str(target) in drift["detail"]
    assert client.get("/api/apps").json()[0]["drift"] == drift
    assert sample(scrape(services), "sluice_app_drift", app="hello", kind="occupied") == 1
    shown = subprocess.run([sys.executable, "-m", "orchestrator.cli", "-c", str(workspace.config_path),
                            "apps"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert "DRIFT (not repaired)" in shown.stdout and "real directory" in shown.stdout

    target.rmdir()
    check_app(services, "hello")
    figures = scrape(services)
    assert sample(figures, "sluice_app_drift", app="hello", kind="occupied") == 0
    assert sample(figures, "sluice_drift_repairs_total", app="hello") == 1
    assert client.get("/api/apps/hello").json()["drift"] is None
