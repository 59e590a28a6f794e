"""Drift: what the disk shows against the active release, and what a check does about it."""
from __future__ import annotations

import os

import pytest

from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core.errors import ConfigError
from orchestrator.core.event_log import RecordedEvent
from orchestrator.core.projections import AppView, replay
from orchestrator.deploying.drift import decide_repair
from orchestrator.releases.drift import Drift, DriftKind, find_drift, look


@pytest.fixture
def disk(tmp_path):
    release = tmp_path / "releases" / "d1"
    release.mkdir(parents=True)
    (tmp_path / "releases" / "d0").mkdir()
    target = tmp_path / "site"
    os.symlink(release, target)
    return target, str(release)


def drift_at(target, release):
    found = find_drift(target, release, look(target, release))
    return found.kind if found else None


def test_a_target_linking_to_the_active_release_is_no_drift(disk):
    assert drift_at(*disk) is None


def test_a_relative_link_to_the_active_release_is_no_drift_either(disk):
    target, release = disk
    target.unlink()
    os.symlink(os.path.relpath(release, target.parent), target)

    assert drift_at(target, release) is None


def test_a_removed_target_is_missing(disk):
    target, release = disk
    target.unlink()

    assert drift_at(target, release) == DriftKind.MISSING


def test_a_target_linking_to_another_release_points_elsewhere_and_names_both(disk):
    target, release = disk
    target.unlink()
    os.symlink(target.parent / "releases" / "d0", target)

    found = find_drift(target, release, look(target, release))

    assert found.kind == DriftKind.ELSEWHERE
    assert str(target.parent / "releases" / "d0") in found.detail and release in found.detail


def test_an_active_release_gone_from_disk_is_release_gone_whatever_the_link_says(disk):
    target, release = disk
    os.rmdir(release)

    assert drift_at(target, release) == DriftKind.RELEASE_GONE
    target.unlink()
    assert drift_at(target, release) == DriftKind.RELEASE_GONE


def test_a_real_folder_or_file_in_the_targets_place_is_occupied_and_named(disk):
    target, release = disk
    target.unlink()
    target.mkdir()
    (target / "index.html").write_text("hand-made")

    found = find_drift(target, release, look(target, release))
    assert found.kind == DriftKind.OCCUPIED and str(target) in found.detail
    assert "real directory" in found.detail

    (target / "index.html").unlink()
    target.rmdir()
    target.write_text("a file")
    assert drift_at(target, release) == DriftKind.OCCUPIED


def test_an_occupied_target_comes_before_a_release_gone(disk):
    target, release = disk
    target.unlink()
    target.mkdir()
    os.rmdir(release)

    assert drift_at(target, release) == DriftKind.OCCUPIED


# --- what a check does --------------------------------------------------------------------

def recorded(*events):
    return [RecordedEvent(n, f"{n}-0", e) for n, e in enumerate(events, start=1)]


def live(*more) -> AppView:
    return replay("a", recorded(
        ev.DeploymentQueued(app="a", at=1.0, deployment_id="d1", revision="r1", trigger="poll"),
        ev.DeploymentSucceeded(app="a", at=2.0, deployment_id="d1", snapshot="s1", release="/r/d1"),
        *more))


def drift(kind: DriftKind) -> Drift:
    return Drift(kind, f"{kind} at /site")


def detected(kind: DriftKind, repair: str, deployment_id: str | None = None, at: float = 3.0):
    return ev.DriftDetected(app="a", at=at, kind=kind, target="/site", detail=f"{kind} at /site",
                            repair=repair, deployment_id=deployment_id)


def test_a_right_target_with_nothing_recorded_needs_nothing():
    assert decide_repair(live(), None).action == "none"


def test_a_right_target_after_recorded_drift_is_confirmed_repaired():
    assert decide_repair(live(detected(DriftKind.MISSING, "switch")), None).action == "confirm"


@pytest.mark.parametrize("kind", [DriftKind.MISSING, DriftKind.ELSEWHERE])
def test_a_missing_or_misdirected_target_is_switched_back(kind):
    assert decide_repair(live(), drift(kind)).action == "switch"


def test_an_occupied_target_is_never_repaired():
    assert decide_repair(live(), drift(DriftKind.OCCUPIED)).action == "none"


def test_a_release_gone_from_disk_is_redeployed():
    assert decide_repair(live(), drift(DriftKind.RELEASE_GONE)).action == "redeploy"


def test_a_release_gone_waits_for_a_deployment_already_queued_rather_than_superseding_it():
    view = live(ev.DeploymentQueued(app="a", at=3.0, deployment_id="d2", revision="r2", trigger="poll"))

    repair = decide_repair(view, drift(DriftKind.RELEASE_GONE))

    assert (repair.action, repair.deployment_id) == ("wait", "d2")


def test_a_release_gone_whose_redeploy_failed_is_left_for_a_person_not_redeployed_again():
    view = live(
        ev.DeploymentQueued(app="a", at=3.0, deployment_id="d2", revision="r1", trigger="redeploy",
                            snapshot="s1"),
        detected(DriftKind.RELEASE_GONE, "redeploy", "d2"),
        ev.DeploymentFailed(app="a", at=4.0, deployment_id="d2", reason="snapshot gone"))

    repair = decide_repair(view, drift(DriftKind.RELEASE_GONE))

    assert (repair.action, repair.deployment_id) == ("none", "d2")


# --- the app's view -------------------------------------------------------------------------

def test_the_view_holds_the_drift_recorded_until_it_is_repaired_and_survives_its_cache():
    view = live(detected(DriftKind.MISSING, "switch", at=3.0),
                detected(DriftKind.MISSING, "switch", at=5.0))

    assert (view.drift.kind, view.drift.repair, view.drift.since) == ("missing", "switch", 3.0)
    assert AppView.from_json(view.to_json()) == view

    repaired = live(detected(DriftKind.MISSING, "switch"),
                    ev.DriftRepaired(app="a", at=4.0, kind="missing", release="/r/d1", how="switched back"))
    assert repaired.drift is None


# --- the setting --------------------------------------------------------------------------

def test_drift_check_is_30_seconds_unless_set_and_0_turns_it_off(tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text("apps: {}\n")
    assert load_config(path).drift_check == 30.0
    path.write_text("drift_check: 0\napps: {}\n")
    assert load_config(path).drift_check == 0.0
    path.write_text("drift_check: 2s\napps: {}\n")
    assert load_config(path).drift_check == 2.0


def test_a_drift_check_that_is_no_duration_is_a_config_error_naming_the_key(tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text("drift_check: soon\napps: {}\n")

    with pytest.raises(ConfigError, match="drift_check"):
        load_config(path)


def test_a_target_showing_a_switched_unfinished_deployment_waits_for_it_to_be_resumed():
    view = live(ev.DeploymentQueued(app="a", at=3.0, deployment_id="d2", revision="r2", trigger="poll"),
                ev.DeploymentStarted(app="a", at=4.0, deployment_id="d2", worker="w"),
                ev.DeploymentSwitched(app="a", at=5.0, deployment_id="d2", release="/r/d2",
                                      previous="/r/d1"))
    repair = decide_repair(view, drift(DriftKind.ELSEWHERE))
    assert (repair.action, repair.deployment_id) == ("wait", "d2")
