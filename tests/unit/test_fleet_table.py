"""`sluice apps` as text columns (observe/fleet_table.py)."""
from __future__ import annotations

from orchestrator.core.app_views import AppView, DeploymentView, DriftView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.observe.fleet_table import AppFacts, fleet_table


def test_an_app_shows_its_active_and_last_deployment_and_what_stops_it():
    view = AppView(name="web", active_deployment="d1", paused="maintenance", rejected={"b" * 40: "unhealthy"},
                   drift=DriftView("occupied", "/t is a directory", "none", None, 1.0),
                   deployments={"d1": DeploymentView("d1", "a" * 40, "poll", 1.0, DeploymentStatus.SUCCESS),
                                "d2": DeploymentView("d2", "c" * 40, "poll", 2.0, DeploymentStatus.FAILED)})

    shown = fleet_table([AppFacts("web", "functions", "git /repo @ main", "/t")], {"web": view}, "a caption")

    lines = shown.splitlines()
    assert lines[0].split() == ["APP", "LAYOUT", "SOURCE", "TARGET", "ACTIVE", "LAST", "DEPLOYMENT", "AUTOMATIC"]
    assert f"d1 ({'a' * 12})" in lines[1] and "failed d2" in lines[1] and "paused: maintenance" in lines[1]
    assert "DRIFT (not repaired): /t is a directory" in lines[2] and f"rejected {'b' * 12}: unhealthy" in lines[2]
    assert lines[-1] == "a caption"


def test_an_app_never_deployed_shows_dashes():
    shown = fleet_table([AppFacts("idle", "site", "git /r @ main", "/t")], {"idle": AppView(name="idle")})

    assert shown.splitlines()[1].split() == ["idle", "site", "git", "/r", "@", "main", "/t", "-", "-", "on"]


def test_at_80_columns_the_ids_stay_whole_and_the_text_wraps():
    view = AppView(name="web", active_deployment="20261202-160528-e9abbf", deployments={
        "20261202-160528-e9abbf": DeploymentView("20261202-160528-e9abbf", "a" * 40, "poll", 1.0,
                                                 DeploymentStatus.SUCCESS)})
    app = AppFacts("web", "functions", "git https://github.com/acme/a-long-repository-name.git @ main",
                   "/srv/sites/a-rather-long-target-folder/web")

    lines = fleet_table([app], {"web": view}, width=80).splitlines()

    assert max(map(len, lines)) <= 80
    assert sum("20261202-160528-e9abbf" in line for line in lines) == 2 and any("a" * 12 in line for line in lines)

