"""Fleet views (`/api/apps`, `sluice apps`, `/metrics`) on the real redis-server: read in a few
round trips whatever the number of apps, a page at a time, only the configured apps."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from orchestrator.api import create_app
from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.observe import metrics
from orchestrator.observe.metrics import SluiceCollector, exposition
from orchestrator.runtime.services import Services
from tests.helpers import write_config
from tests.integration.flow import database_of_its_own, recorded_deployment

TOKEN = "t0ken-for-fleet-tests"
LOCAL = "http://localhost"


class Fleet:
    def __init__(self, tmp_path, redis_url: str):
        self.root, self.redis_url = tmp_path, redis_url
        self.config_path = tmp_path / "sluice.yaml"

    def configure(self, names: list[str]) -> Services:
        apps = {name: {"target": str(self.root / "sites" / name)} for name in names}
        write_config(self.config_path, self.root / "var", apps, self.redis_url,
                     api={"reads": "loopback", "token": TOKEN})
        return Services.build(load_config(self.config_path))

    def client(self, services: Services) -> TestClient:
        return TestClient(create_app(services), base_url=LOCAL,
                          headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def fleet(tmp_path, redis_url) -> Fleet:
    """On a database of its own: the session's worker, on database 0, has a reaper that reads
    every app's view now and then, which would cache views a count of round trips expects
    the listing to read and save."""
    return Fleet(tmp_path, database_of_its_own(redis_url, 2))


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: one send is one round trip (a pipeline's
    commands go in one)."""
    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent += 1
        return super().send_packed_command(command, check_health)


def counting(services: Services) -> Services:
    """The services, their Redis client counting round trips (before anything uses it)."""
    pool = redis.ConnectionPool.from_url(services.redis_url, connection_class=CountingConnection)
    services.__dict__["redis"] = redis.Redis(connection_pool=pool)
    return services


def round_trips_of_listing(fleet: Fleet, count: int) -> int:
    names = [f"app{i:04}" for i in range(count)]
    services = counting(fleet.configure(names))
    for name in names[::3]:             # cached, then moved since
        recorded_deployment(services, name)
        services.projections.app(name)
        recorded_deployment(services, name, 2)
    for name in names[1::3]:            # never cached
        recorded_deployment(services, name)
    client = fleet.client(services)
    client.get("/api/apps", params={"limit": 1})        # connections made, not counted
    before = CountingConnection.sent

    listed = client.get("/api/apps", params={"limit": count}).json()

    assert [a["name"] for a in listed] == names
    assert all(a["active"]["id"] == f"{a['name']}-d2" for a in listed[::3])
    return CountingConnection.sent - before


def test_listing_apps_takes_as_many_redis_round_trips_for_three_hundred_apps_as_for_three(fleet):
    few = round_trips_of_listing(fleet, 3)
    many = round_trips_of_listing(fleet, 300)

    assert many == few <= 5


def test_a_listing_shows_the_events_since_the_last_and_costs_one_round_trip_when_none_came(fleet):
    services = counting(fleet.configure(["web", "api"]))
    client = fleet.client(services)
    assert client.get("/api/apps").json()[0]["active"] is None

    recorded_deployment(services, "web")
    moved = client.get("/api/apps").json()
    before = CountingConnection.sent
    again = client.get("/api/apps").json()

    assert moved[0]["active"]["id"] == "web-d1" and again == moved
    assert CountingConnection.sent - before == 1


def recording_reads(services: Services) -> list[list[str]]:
    """The apps each read of many views asks for, as they are asked."""
    asked: list[list[str]] = []
    read = services.projections.apps

    def apps(names):
        asked.append(list(names))
        return read(names)
    services.projections.apps = apps        # type: ignore[method-assign]
    return asked


def a_fresh_listing(fleet: Fleet, services: Services) -> list[dict]:
    return fleet.client(Services.build(services.config)).get("/api/apps").json()


def test_a_listing_after_some_apps_moved_reads_only_those_and_is_what_a_fresh_read_gives(fleet):
    names = [f"app{i:02}" for i in range(12)]
    services = fleet.configure(names)
    for name in names[::2]:
        recorded_deployment(services, name)
    client = fleet.client(services)
    client.get("/api/apps")
    asked = recording_reads(services)

    recorded_deployment(services, "app01")
    recorded_deployment(services, "app04", 2)
    recorded_deployment(services, "app04", 3)
    listed = client.get("/api/apps").json()

    assert [sorted(names) for names in asked] == [["app01", "app04"]]
    assert listed == a_fresh_listing(fleet, services)
    assert listed[4]["active"]["id"] == "app04-d3" and listed[1]["active"]["id"] == "app01-d1"


def test_a_listing_reads_every_app_again_when_the_feed_no_longer_holds_the_id_it_was_read_at(fleet):
    names = ["web", "api", "docs"]
    services = fleet.configure(names)
    client = fleet.client(services)
    client.get("/api/apps")
    asked = recording_reads(services)

    recorded_deployment(services, "web")
    services.redis.xtrim(keys.FEED, maxlen=0)       # the window moved past what the page saw
    recorded_deployment(services, "api")
    listed = client.get("/api/apps").json()

    assert asked == [names]
    assert listed == a_fresh_listing(fleet, services) and listed[0]["active"]["id"] == "web-d1"


def test_apps_are_listed_a_page_at_a_time_in_the_configs_order(fleet):
    names = ["web", "api", "docs", "blog", "shop", "admin", "mail"]
    services = fleet.configure(names)
    client = fleet.client(services)

    pages, url = [], "/api/apps?limit=3"
    while url:
        response = client.get(url)
        pages.append([a["name"] for a in response.json()])
        url = response.links.get("next", {}).get("url")

    assert pages == [names[:3], names[3:6], names[6:]]
    assert [a["name"] for a in client.get("/api/apps").json()] == names, "a small fleet: one page"
    assert "link" not in client.get("/api/apps").headers


def test_a_page_after_an_app_not_configured_is_a_404_naming_it(fleet):
    client = fleet.client(fleet.configure(["web"]))

    response = client.get("/api/apps", params={"after": "gone"})

    assert response.status_code == 404 and "'gone'" in response.json()["error"]


def test_sluice_apps_shows_the_first_apps_and_says_how_to_see_more(fleet):
    names = [f"app{i}" for i in range(5)]
    fleet.configure(names)

    def sluice_apps(*options: str) -> str:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(fleet.config_path),
                               "apps", *options], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "200"}, check=True).stdout

    first = sluice_apps("--limit", "2")
    whole = sluice_apps()

    assert "app1" in first and "app2" not in first and "the first 2 of 5: --limit N or --all" in first
    assert all(name in whole for name in names) and "--all" not in whole
    assert all(name in sluice_apps("--limit", "2", "--all") for name in names)


def test_metrics_show_the_configured_apps_only(fleet):
    services = fleet.configure(["web"])
    recorded_deployment(services, "web")
    recorded_deployment(services, "retired")                   # events of an app no longer configured

    text = exposition(services)[0].decode()

    apps = {s.labels.get("app") for family in text_string_to_metric_families(text) for s in family.samples}
    assert apps - {None} == {"web"}


OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def scraped_at_once(services: Services, accept: str = "") -> bytes:
    """What prometheus_client writes of every family of every app read at once."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SluiceCollector(services))
    return choose_encoder(accept)[0](registry)


def failed_then_retried(services: Services, app: str) -> None:
    services.store.append(app, [
        ev.ChangeDetected(app=app, at=10, revision="r9", trigger="poll"),
        ev.DeploymentQueued(app=app, at=10, deployment_id=f"{app}-d9", revision="r9", trigger="poll"),
        ev.DeploymentStarted(app=app, at=11, deployment_id=f"{app}-d9", worker="w"),
        ev.DeploymentRetrying(app=app, at=12, deployment_id=f"{app}-d9", attempt=1, reason="boom",
                                 retry_in=5),
    ], ANY_VERSION)


def test_metrics_put_together_from_each_apps_text_are_what_every_app_read_at_once_gives(fleet):
    names = ["web", "api", "docs", "blog"]
    services = fleet.configure(names)
    recorded_deployment(services, "web")
    recorded_deployment(services, "api")
    first = {accept: exposition(services, accept)[0] for accept in ("", OPENMETRICS)}

    recorded_deployment(services, "api", 2)
    failed_then_retried(services, "docs")
    restarted = fleet.configure(names)

    for accept in ("", OPENMETRICS):
        assert first[accept] != scraped_at_once(restarted, accept), "the apps moved since"
        assert exposition(restarted, accept)[0] == scraped_at_once(restarted, accept)
        assert exposition(restarted, accept)[0] == scraped_at_once(restarted, accept), "kept as it was"


def test_a_scrape_reads_and_formats_again_only_the_apps_whose_stream_moved(fleet, monkeypatch):
    services = fleet.configure(["web", "api", "docs"])
    recorded_deployment(services, "web")
    exposition(services)
    asked: list[list[str]] = []
    read = metrics.apps_figures
    monkeypatch.setattr(metrics, "apps_figures", lambda s, apps: asked.append(list(apps)) or read(s, apps))

    recorded_deployment(services, "api")
    restarted = fleet.configure(["web", "api", "docs"])
    text = exposition(restarted)[0]
    exposition(restarted)

    assert asked == [["api"]]
    assert text == scraped_at_once(restarted)
