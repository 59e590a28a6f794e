"""Per-host state made visible (issue 19): which host runs which deployment, and which lag, in
`sluice apps`, `sluice deployments`, the API, /metrics and `sluice queue` — from Host* events
appended to the app's stream as host workers append them, on the session's real redis-server
(test_dashboard.py shows these in a browser); and, at the end, from real `sluice worker --host`
processes (test_hosts.py's fleet): a host added, and a host down during a rollout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.api import create_app
from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.deploying.task_queue import send_host
from orchestrator.observe.metrics import exposition
from orchestrator.observe.queue_view import inspect_queue
from orchestrator.runtime.services import Services
from tests.helpers import wait_for, write_config
from tests.integration import test_hosts
from tests.integration.flow import database_of_its_own, sync_and_wait
from tests.integration.test_fleet_views import OPENMETRICS, scraped_at_once
from tests.servers.api_server import serving

fleet_of = test_hosts.fleet_of      # real host workers (the fixture, shared)

TOKEN = "t0ken-for-host-views"
D1, D2, D3 = "20261201-100000-aaaaaa", "20261202-100000-bbbbbb", "20261203-100000-cccccc"
SILENT = "no answer within host_timeout (4 s)"


class Hosted:
    def __init__(self, root: Path, redis_url: str):
        self.root, self.redis_url, self.config_path = root, redis_url, root / "sluice.yaml"
        self.services = self.configure(["web1", "web2", "web3"])

    def configure(self, hosts: list[str]) -> Services:
        """App `hello` on `hosts`, app `plain` on none; the services of that config."""
        write_config(self.config_path, self.root / "var",
                     {"hello": {"target": str(self.root / "sites" / "{host}" / "hello"), "hosts": hosts},
                      "plain": {"target": str(self.root / "sites" / "plain")}},
                     self.redis_url, api={"token": TOKEN, "reads": "loopback"})
        self.services = Services.build(load_config(self.config_path))
        return self.services

    def client(self, services: Services | None = None) -> TestClient:
        return TestClient(create_app(services or self.services), base_url="http://localhost",
                          headers={"Authorization": f"Bearer {TOKEN}"})

    def sluice(self, *args: str, columns: int = 200) -> str:
        return sluice(self.config_path, *args, columns=columns)

    def append(self, *events: ev.Event) -> None:
        self.services.store.append("hello", list(events), ANY_VERSION)


def sluice(config_path: Path, *args: str, columns: int = 200) -> str:
    """What `sluice --config CONFIG_PATH ARGS` prints on a terminal `columns` wide."""
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(config_path), *args],
                          capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "COLUMNS": str(columns)}).stdout


def started(d: str, at: float) -> list[ev.Event]:
    return [ev.DeploymentQueued(app="hello", at=at, deployment_id=d, revision=d[-6:] * 6, trigger="manual"),
            ev.DeploymentStarted(app="hello", at=at, deployment_id=d, worker="w")]


def switched(d: str, host: str, at: float, converged: bool = False) -> ev.HostSwitched:
    return ev.HostSwitched(app="hello", at=at, deployment_id=d, host=host, release=f"/data/releases/hello/{d}",
                           converged=converged)


@pytest.fixture
def hosted(tmp_path, redis_url) -> Hosted:
    return hosted_app(tmp_path, redis_url)


def hosted_app(root: Path, redis_url: str) -> Hosted:
    """App `hello` on web1, web2 and web3 (web3 added since its rollouts), its own database:
    D1 live on web1 and web2; D2 failed (web2 silent, web1 switched back); D3 rolling out,
    switched on web1 only so far. So web1 is rolling out, web2 in step, web3 behind."""
    hosted = Hosted(root, database_of_its_own(redis_url, 5))
    hosted.append(*started(D1, 1), switched(D1, "web1", 2), switched(D1, "web2", 2),
                  ev.DeploymentSucceeded(app="hello", at=3, deployment_id=D1, snapshot="s1", release=f"/r/{D1}"))
    hosted.append(*started(D2, 4), switched(D2, "web1", 5),
                  ev.HostFailed(app="hello", at=6, deployment_id=D2, host="web2", reason=SILENT),
                  ev.HostRolledBack(app="hello", at=7, deployment_id=D2, host="web1",
                                    release=f"/data/releases/hello/{D1}"),
                  ev.DeploymentFailed(app="hello", at=8, deployment_id=D2, reason=f"rollout failed on web2: {SILENT}"))
    hosted.append(*started(D3, 9), switched(D3, "web1", 10))
    return hosted


def test_sluice_apps_lists_each_host_with_what_it_runs_and_marks_those_lagging(hosted):
    shown = hosted.sluice("apps")

    cells = " | ".join(line for line in shown.splitlines() if "web" in line)
    assert f"web1: {D3} (rolling out)" in cells
    assert f"web2: {D1}" in cells and f"web2: {D1} (" not in cells
    assert "web3: nothing (behind)" in cells
    assert all("web" not in line for line in shown.splitlines() if line.startswith("plain"))


def test_sluice_deployments_shows_each_hosts_word_on_each_deployment(hosted):
    table = hosted.sluice("deployments", "hello", columns=300)
    listed = {d["id"]: d["hosts"] for d in json.loads(hosted.sluice("deployments", "hello", "--json"))}

    assert "hosts" in table and f"web2: failed: {SILENT}" in table and "web1: rolled back" in table
    assert listed == {D3: {"web1": "switched"},
                      D2: {"web1": "rolled back", "web2": f"failed: {SILENT}"},
                      D1: {"web1": "switched", "web2": "switched"}}
    assert "hosts" not in hosted.sluice("deployments", "plain"), "an app without hosts: no such column"


def test_the_api_gives_each_hosts_deployment_and_state_and_each_deployments_host_states(hosted):
    client = hosted.client()

    listed = {a["name"]: a for a in client.get("/api/apps").json()}
    detail = client.get("/api/apps/hello").json()
    page = client.get("/api/apps/hello/deployments").json()
    one = client.get(f"/api/deployments/{D2}").json()

    assert [(h["host"], h["deployment_id"], h["state"]) for h in listed["hello"]["hosts"]] == [
        ("web1", D3, "rolling out"), ("web2", D1, "in step"), ("web3", None, "behind")]
    assert listed["hello"]["hosts"][2]["text"] == "web3: nothing (behind)"
    assert listed["plain"]["hosts"] == [] and listed["plain"]["active"] is None
    assert detail["hosts"] == listed["hello"]["hosts"]
    assert [d["hosts"] for d in detail["deployments"]] == [d["hosts"] for d in page]
    assert one["hosts"] == {"web1": "rolled back", "web2": f"failed: {SILENT}"}


def test_a_listing_after_a_host_caught_up_shows_it_in_step_as_a_fresh_read_does(hosted):
    client = hosted.client()
    client.get("/api/apps")

    hosted.append(switched(D1, "web3", 11, converged=True))
    listed = client.get("/api/apps").json()

    fresh = hosted.client(Services.build(hosted.services.config)).get("/api/apps").json()
    assert listed == fresh
    assert listed[0]["hosts"][2] == {"host": "web3", "deployment_id": D1, "state": "in step", "text": f"web3: {D1}"}


def host_active(text: str) -> dict[str, float]:
    return {s.labels["host"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "sluice_host_active"}


def test_metrics_say_which_hosts_run_the_active_deployment_and_follow_the_configs_hosts(hosted):
    services = hosted.services
    first = exposition(services)[0].decode()
    for accept in ("", OPENMETRICS):
        assert exposition(services, accept)[0] == scraped_at_once(services, accept)

    restarted = hosted.configure(["web1", "web2", "web3", "web4"])     # no event since: kept texts
    again = exposition(restarted)[0].decode()

    assert host_active(first) == {"web1": 0, "web2": 1, "web3": 0}
    assert host_active(again) == {"web1": 0, "web2": 1, "web3": 0, "web4": 0}
    assert exposition(restarted)[0] == scraped_at_once(restarted)


def test_a_text_kept_by_a_sluice_with_other_families_is_formatted_again(hosted):
    services = hosted.services
    exposition(services)
    key = keys.metrics_text("text/plain", "hello")
    version = services.store.version("hello")
    services.redis.set(key, b"%d\n" % version + b'sluice_deployments_total{app="hello"} 42.0\n')

    text = exposition(services)[0]

    assert text == scraped_at_once(services) and b"42.0" not in text


def test_each_configured_hosts_queue_is_shown_with_its_depth_in_the_queue_and_metrics(hosted):
    services = hosted.services
    send_host(services.redis_url, "switch", "hello", "web2", D3, 7, time.time() - 5)

    report = inspect_queue(services)
    table = hosted.sluice("queue")
    metrics = exposition(services)[0].decode()

    queues = {q["name"]: q for q in report["queues"]}
    assert list(queues)[:4] == ["deploy", "deploy.web1", "deploy.web2", "deploy.web3"]
    assert (queues["deploy.web2"]["host"], queues["deploy.web2"]["waiting"]) == ("web2", 1)
    assert queues["deploy.web2"]["oldest_age"] >= 5
    assert (queues["deploy.web1"]["waiting"], queues["deploy"]["host"]) == (0, None)
    assert any(line.split()[:3] == ["deploy.web2", "web2", "1"] for line in
               table.replace("│", " ").splitlines() if line.strip())
    assert 'sluice_queue_depth{queue="deploy.web2"} 1.0' in metrics
    assert 'sluice_queue_depth{queue="deploy.web3"} 0.0' in metrics


def test_a_host_taken_out_of_the_config_is_no_longer_shown(hosted):
    services = hosted.configure(["web2"])

    listed = hosted.client(services).get("/api/apps/hello").json()

    assert [h["host"] for h in listed["hosts"]] == ["web2"]
    assert host_active(exposition(services)[0].decode()) == {"web2": 1}
    assert yaml.safe_load(hosted.config_path.read_text())["apps"]["hello"]["hosts"] == ["web2"]


# ---- from real host workers ----------------------------------------------------------------

def hosts_listed(base: str) -> dict[str, tuple[str | None, str]]:
    hello = httpx.get(base + "/api/apps/hello", timeout=10).json()
    return {h["host"]: (h["deployment_id"], h["state"]) for h in hello["hosts"]}


def test_a_host_added_shows_behind_until_its_worker_brings_it_in_step(fleet_of, workspace):
    fleet = fleet_of(["web1"], workers=["web1", "web2"])
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    assert first.status == "success", first.message
    fleet.workers["web2"].stop()
    config = yaml.safe_load(workspace.config_path.read_text())
    config["apps"]["hello"]["hosts"] = ["web1", "web2"]
    workspace.config_path.write_text(yaml.safe_dump(config))
    services = Services.build(load_config(workspace.config_path))

    with serving(services) as base:
        lagging = hosts_listed(base)
        shown = sluice(workspace.config_path, "apps")
        scraped = host_active(httpx.get(base + "/metrics", timeout=10).text)
        fleet.workers["web2"].start()
        caught_up = wait_for(lambda: (h := hosts_listed(base))["web2"][1] == "in step" and h, timeout=30,
                             what="web2 to converge")
        scraped_after = host_active(httpx.get(base + "/metrics", timeout=10).text)

    assert lagging == {"web1": (first.id, "in step"), "web2": (None, "behind")}
    assert f"web1: {first.id}\n" in shown and "web2: nothing (behind)" in shown
    assert scraped == {"web1": 1, "web2": 0}
    assert caught_up == {"web1": (first.id, "in step"), "web2": (first.id, "in step")}
    assert scraped_after == {"web1": 1, "web2": 1}
    assert f"web2: {first.id}\n" in sluice(workspace.config_path, "apps")


def test_a_host_down_during_a_rollout_is_named_on_the_deployment_and_its_switch_waits_in_its_queue(
        fleet_of, workspace):
    fleet = fleet_of(["web1", "web2"], host_timeout="3s")
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    fleet.workers["web2"].stop()
    test_hosts.v2(fleet)

    failed = sync_and_wait(fleet.services, "hello", timeout=60)

    assert failed.status == "failed", failed.message
    listed = json.loads(sluice(workspace.config_path, "deployments", "hello", "--json"))
    assert listed[0]["id"] == failed.id
    assert listed[0]["hosts"] == {"web1": "rolled back", "web2": "failed: no answer within host_timeout (3 s)"}
    assert listed[1]["hosts"] == {"web1": "switched", "web2": "switched"}
    queues = {q["name"]: q for q in inspect_queue(fleet.services)["queues"]}
    # the switch, and what the worker's own convergence had queued for itself when it stopped
    assert queues["deploy.web2"]["host"] == "web2" and queues["deploy.web2"]["waiting"] >= 1
    assert fleet.services.projections.app("hello").hosts == {"web1": first.id, "web2": first.id}

    fleet.workers["web2"].start()

    wait_for(lambda: "switch: nothing to do" in fleet.workers["web2"].log.read_text(), timeout=30,
             what="web2 to take the switch waiting for it (stale now: it does nothing)")
