"""`sluice apps` the short way (cli/quick_apps.py): once a full read has kept the config's
summary, a fresh `sluice apps` shows the fleet from it and the cached views, importing none
of Typer, pydantic, YAML, redis-py or the events — and shows exactly what the long way shows.
At any doubt (an event since the view was cached, the config or a variable it read changed,
Redis out of reach) it is the long way that answers. On the session's real redis-server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.runtime.services import Services
from tests.helpers import write_config
from tests.integration.flow import database_of_its_own, recorded_deployment
from tests.unit.test_cli_imports import HEAVY, heavy_among

# `sluice ARGS` in a fresh interpreter: what it printed, its exit code, the modules it imported
RUN_AND_LIST = """
import contextlib, io, json, sys
from orchestrator.cli import main
sys.argv = ["sluice", *sys.argv[1:]]
code = 0
with contextlib.redirect_stdout(io.StringIO()) as shown, contextlib.redirect_stderr(io.StringIO()) as said:
    try:
        main()
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"shown": shown.getvalue(), "said": said.getvalue(), "code": code,
                  "modules": sorted(sys.modules)}))
"""
LONG_WAY = ("typer", "pydantic", "redis", "orchestrator.config.settings")


class Fleet:
    def __init__(self, root, url: str):
        self.root, self.url, self.config = root, url, root / "sluice.yaml"

    def configure(self, names: list[str], redis_url: str | None = None, hosts: list[str] | None = None,
                  **settings) -> Services:
        """`hosts`: where the first app lives."""
        apps = {n: {"target": str(self.root / "sites" / n)} for n in names}
        if hosts:
            apps[names[0]]["hosts"] = hosts
        write_config(self.config, self.root / "var", apps, redis_url or self.url, **settings)
        written_long_ago(self.config)
        return Services.build(load_config(self.config))

    def apps(self, *options: str, env: dict | None = None) -> dict:
        result = subprocess.run([sys.executable, "-c", RUN_AND_LIST, "--config", str(self.config), "apps",
                                 *options], capture_output=True, text=True, timeout=60, check=True,
                                env={**os.environ, "COLUMNS": "200", **(env or {})})
        return json.loads(result.stdout)


def written_long_ago(path) -> None:
    """As a config is, but for the last two seconds: one just written may be written again
    with the same stamp (config/stamps.py), so a read of it is never kept."""
    past = time.time() - 60
    os.utime(path, (past, past))


def went_long_way(ran: dict) -> bool:
    return heavy_among(ran["modules"], LONG_WAY) != []


@pytest.fixture
def fleet(tmp_path, redis_url) -> Fleet:
    """On a database of its own: the session's worker (database 0) reads and caches views."""
    return Fleet(tmp_path, database_of_its_own(redis_url, 3))


def troubled(services: Services, app: str) -> None:
    services.store.append(app, [
        ev.AppPaused(app=app, at=5, reason="operator said so"),
        ev.RevisionRejected(app=app, at=6, revision="b" * 40, deployment_id=f"{app}-d9", reason="health check failed"),
        ev.DriftDetected(app=app, at=7, kind="occupied", target="/t", detail="/t is a real directory",
                         repair="none"),
    ], ANY_VERSION)


def test_the_short_way_shows_what_the_long_way_showed_and_imports_none_of_it(fleet):
    services = fleet.configure(["web", "api", "idle"])
    recorded_deployment(services, "web")
    recorded_deployment(services, "api")
    troubled(services, "api")

    long = fleet.apps()
    short = fleet.apps()

    assert went_long_way(long) and not went_long_way(short)
    assert heavy_among(short["modules"], HEAVY + ("typer", "rich")) == []
    assert short["shown"] == long["shown"]
    shown = short["shown"]
    assert "web" in shown and "idle" in shown and "web-d1 (" in shown and "success web-d1" in shown
    assert "paused: operator said so" in shown and "rejected bbbbbbbbbbbb: health check failed" in shown
    assert "DRIFT (not repaired): /t is a real directory" in shown


def test_the_short_way_shows_each_host_and_what_it_runs_as_the_long_way_does(fleet):
    services = fleet.configure(["web", "api"], hosts=["web1", "web2"])
    recorded_deployment(services, "web")
    services.store.append("web", [ev.HostSwitched(app="web", at=2, deployment_id="web-d1", host="web1",
                                                  release="/data/releases/web/web-d1")], ANY_VERSION)

    long = fleet.apps()
    short = fleet.apps()

    assert went_long_way(long) and not went_long_way(short)
    assert short["shown"] == long["shown"]
    assert "web1: web-d1\n" in short["shown"] and "web2: nothing (behind)" in short["shown"]


def test_a_page_the_short_way_says_how_to_see_more_as_the_long_way_does(fleet):
    fleet.configure([f"app{i}" for i in range(5)])
    long = fleet.apps("--limit", "2")
    short = fleet.apps("-n", "2")
    every = fleet.apps("--limit=2", "--all")

    assert not went_long_way(short) and short["shown"] == long["shown"]
    assert "the first 2 of 5: --limit N or --all for more" in short["shown"] and "app2" not in short["shown"]
    assert not went_long_way(every) and all(f"app{i}" in every["shown"] for i in range(5))


def test_an_event_recorded_since_the_view_was_cached_is_shown_by_the_long_way(fleet):
    services = fleet.configure(["web"])
    recorded_deployment(services, "web")
    fleet.apps()
    recorded_deployment(services, "web", 2)

    ran = fleet.apps()

    assert went_long_way(ran) and "success web-d2" in ran["shown"]
    assert not went_long_way(fleet.apps()), "the long way cached the view it caught up"


def test_a_config_edited_or_a_variable_it_read_changed_is_read_again(fleet, monkeypatch):
    monkeypatch.setenv("QUICK_APPS_REDIS", fleet.url)
    fleet.configure(["web"], redis_url="${QUICK_APPS_REDIS}")
    fleet.apps()
    assert not went_long_way(fleet.apps())

    assert went_long_way(fleet.apps(env={"QUICK_APPS_REDIS": fleet.url + "?socket_timeout=5"}))

    fleet.configure(["web", "new"], redis_url="${QUICK_APPS_REDIS}")
    ran = fleet.apps()
    assert went_long_way(ran) and "new" in ran["shown"]


def test_options_the_short_way_does_not_know_go_the_long_way(fleet):
    fleet.configure(["web"])
    fleet.apps()

    assert "Usage: sluice apps" in fleet.apps("--help")["shown"]
    assert went_long_way(fleet.apps("--log-level", "DEBUG"))
    refused = fleet.apps("--limit", "0")
    assert refused["code"] == 2 and "--limit" in refused["said"]


def test_redis_out_of_reach_is_reported_by_the_long_way_both_times(fleet, tmp_path):
    fleet.configure(["web"], redis_url="redis://127.0.0.1:9/0")

    for _ in range(2):
        ran = fleet.apps()
        assert ran["code"] == 1 and "cannot reach Redis" in ran["said"] and went_long_way(ran)


def test_the_kept_summary_is_its_owners_alone_and_holds_no_value_from_the_environment(fleet, monkeypatch):
    monkeypatch.setenv("QUICK_APPS_REDIS", fleet.url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(fleet.root / "cache"))
    password = urlsplit(fleet.url).password
    fleet.configure(["web"], redis_url="${QUICK_APPS_REDIS}")
    fleet.apps()
    assert not went_long_way(fleet.apps())

    folder = os.path.join(os.environ["XDG_CACHE_HOME"], "sluice")
    files = [os.path.join(folder, f) for f in os.listdir(folder)]
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert {os.stat(f).st_mode & 0o777 for f in files} == {0o600}
    assert password and not any(password in open(f).read() for f in files)
