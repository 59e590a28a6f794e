"""`health` (issue 15): after the switch and the activation, the release must answer healthy
or the deployment rolls back by itself and its revision is rejected. With the session's real
worker and a real app host (tests/servers/release_host.py) that serves the release it pinned
and takes up the new one on SIGHUP."""
from __future__ import annotations

import httpx
import pytest

from orchestrator.core import events as ev
from orchestrator.deploying.sync import deploy_head, sync_now
from tests.integration.flow import sync_and_wait, wait_until_ended
from tests.servers.release_host import ReleaseHost


def events_of(services, app: str, deployment_id: str) -> list[ev.Event]:
    return [r.event for r in services.store.read(app) if getattr(r.event, "deployment_id", None) == deployment_id]


@pytest.fixture
def host(workspace, tmp_path):
    with ReleaseHost(workspace.target("web"), tmp_path / "host") as running:
        yield running


def web_app(workspace, host, files: dict, **health):
    """An app the host serves: activated by SIGHUP, its /health probed every 50 ms."""
    return workspace.app_with(
        files, name="web", layout="site",
        activate=[{"signal": {"pidfile": str(host.pidfile), "signal": "HUP"}}],
        health={"url": f"{host.url}/health", "interval": 0.05, "deadline": 5, **health})


def serving(host) -> httpx.Response:
    return httpx.get(f"{host.url}/health")


def test_a_healthy_revision_is_verified_and_its_release_serves(workspace, host):
    repo, services = web_app(workspace, host, {"version": "v1"}, healthy_after=2)

    d = sync_and_wait(services, "web")

    assert d.status == "success", d.message
    assert serving(host).headers["X-Release"] == d.id and serving(host).text == "v1"
    types = [e.type for e in events_of(services, "web", d.id)]
    assert types[types.index("DeploymentSwitched"):] == [
        "DeploymentSwitched", "DeploymentActivated", "HealthCheckStarted", "HealthCheckPassed",
        "DeploymentSucceeded"]
    passed = next(e for e in events_of(services, "web", d.id) if isinstance(e, ev.HealthCheckPassed))
    assert passed.probes >= 2 and passed.failures == 0
    assert {"activate", "verify"} <= set(next(e for e in events_of(services, "web", d.id)
                                             if isinstance(e, ev.DeploymentSucceeded)).steps)


def test_a_revision_answering_500_rolls_back_and_is_not_deployed_again_by_the_next_poll(workspace, host):
    repo, services = web_app(workspace, host, {"version": "v1"})
    first = sync_and_wait(services, "web")
    broken = repo.commit({"version": "v2", "status": "500"})

    d = sync_and_wait(services, "web")

    assert d.status == "failed", d.message
    assert "answered 500" in d.message and f"rolled back to release {first.id}" in d.message
    assert serving(host).text == "v1" and serving(host).headers["X-Release"] == first.id
    assert services.projections.app("web").active.id == first.id
    assert broken in services.projections.app("web").rejected
    types = [e.type for e in events_of(services, "web", d.id)]
    assert types[-4:] == ["HealthCheckFailed", "RevisionRejected", "DeploymentRolledBack",
                          "DeploymentFailed"]
    again = deploy_head(services, "web", "poll")
    assert again.deployment_id is None or not again.new, again
    plain = sync_now(services, "web")
    assert plain.deployment_id is None and "was rejected" in plain.reason


def test_a_revision_healthy_at_first_that_fails_within_stable_for_rolls_back(workspace, host):
    repo, services = web_app(workspace, host, {"version": "v1"}, stable_for=1)
    first = sync_and_wait(services, "web")
    repo.commit({"version": "v2", "status": "200 200 200 500"})

    d = sync_and_wait(services, "web")

    assert d.status == "failed" and "stable_for" in d.message, d.message
    assert serving(host).headers["X-Release"] == first.id


def test_an_operator_can_force_a_rejected_revision_and_keep_it_with_on_failure_keep(workspace, host):
    repo, services = web_app(workspace, host, {"version": "v1"})
    sync_and_wait(services, "web")
    broken = repo.commit({"version": "v2", "status": "500"})
    assert sync_and_wait(services, "web").status == "failed"

    forced = sync_now(services, "web", force=True)

    assert forced.new and broken not in services.projections.app("web").rejected
    assert wait_until_ended(services, "web", forced.deployment_id).status == "failed"   # rolls back again
    assert broken in services.projections.app("web").rejected
