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



def hosted_view() -> AppView:
    """d1 live; d2 rolling out, switched on web1 so far; web2 on d1; web3 on d0, web4 on nothing."""
    ids = ["20261201-100000-aaaaaa", "20261202-100000-bbbbbb", "20261130-100000-cccccc"]
    return AppView(name="web", active_deployment=ids[0],
                   hosts={"web1": ids[1], "web2": ids[0], "web3": ids[2], "gone": ids[2]},
                   deployments={ids[2]: DeploymentView(ids[2], "c" * 40, "poll", 0.0, DeploymentStatus.SUCCESS),
                                ids[0]: DeploymentView(ids[0], "a" * 40, "poll", 1.0, DeploymentStatus.SUCCESS),
                                ids[1]: DeploymentView(ids[1], "b" * 40, "poll", 2.0, DeploymentStatus.DEPLOYING)})


def test_an_app_with_hosts_lists_each_under_its_active_deployment_marking_those_that_lag():
    app = AppFacts("web", "site", "git /r @ main", "/srv/{host}/web", ("web1", "web2", "web3", "web4"))

    lines = fleet_table([app], {"web": hosted_view()}).splitlines()

    assert [line.split("  ")[-1].strip() for line in lines[2:6]] == [
        "web1: 20261202-100000-bbbbbb (rolling out)", "web2: 20261201-100000-aaaaaa",
        "web3: 20261130-100000-cccccc (behind)", "web4: nothing (behind)"]
    assert "gone" not in "\n".join(lines), "a host the config no longer names"


def test_at_80_columns_a_hosts_deployment_id_stays_whole():
    app = AppFacts("web", "functions", "git https://github.com/acme/a-long-repository-name.git @ main",
                   "/srv/sites/a-rather-long-target-folder/{host}/web", ("web1", "web2", "web3"))

    lines = fleet_table([app], {"web": hosted_view()}, width=80).splitlines()

    assert max(map(len, lines)) <= 80
    assert sum("20261130-100000-cccccc" in line for line in lines) == 1
    assert any("(behind)" in line for line in lines) and any("(rolling out)" in line for line in lines)
