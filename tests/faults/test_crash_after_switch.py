"""kill -9 of the worker while it activates or verifies a switched release (issue 15): the
deployment taken up again is never stuck there — it is verified and succeeds, or it rolls
back — and the host ends up serving what the target shows."""
from __future__ import annotations

import time

import httpx
import pytest

from orchestrator.deploying.dispatch import request_deployment
from tests.helpers import git_app, wait_for
from tests.integration.flow import wait_until_ended
from tests.servers.release_host import ReleaseHost

APP = "verified"


def recorded(services, deployment_id: str) -> list[str]:
    return [r.event.type for r in services.store.read(APP)
            if getattr(r.event, "deployment_id", None) == deployment_id]


def kill_at(rig, worker, services, deployment_id: str, event: str, after: float):
    wait_for(lambda: event in recorded(services, deployment_id), timeout=60, interval=0.005,
             what=f"{event} of {deployment_id}")
    time.sleep(after)
    assert not services.projections.app(APP).deployments[deployment_id].terminal, \
        "the deployment ended before the kill"
    worker.kill()
    return rig.start_worker()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("status, event, ends", [
    ("200", "HealthCheckStarted", "success"),                   # stays healthy: verified
    ("200 " * 8 + "500", "HealthCheckStarted", "failed"),        # fails within stable_for
    ("200", "DeploymentSwitched", "success"),                   # killed while activating
])
def test_a_worker_killed_after_the_switch_leaves_a_deployment_that_ends_verified_or_rolled_back(
        rig_factory, tmp_path, status, event, ends):
    rig = rig_factory(visibility_timeout=3.0)
    repo = rig.repo()
    repo.commit({"version": "v1"})
    with ReleaseHost(rig.target(APP), tmp_path / "host") as host:
        slow_hup = f"sleep 1; kill -HUP $(cat {host.pidfile})"      # activating takes a second
        services = rig.configure({APP: git_app(
            repo, rig.target(APP), layout="site", retry={"attempts": 5, "base": "100ms", "max": "1s"},
            activate=[{"command": slow_hup}],
            health={"url": f"{host.url}/health", "interval": 0.1, "deadline": 10, "stable_for": 2})},
            lease_ttl="1s")
        worker = rig.start_worker()
        first = request_deployment(services, APP, repo.head(), "manual").deployment_id
        assert wait_until_ended(services, APP, first, timeout=60).status == "success"
        repo.commit({"version": "v2", "status": status})
        second = request_deployment(services, APP, repo.head(), "manual").deployment_id

        rig_worker = kill_at(rig, worker, services, second, event, after=0.5)
        d = wait_until_ended(services, APP, second, timeout=60)

        events = recorded(services, second)
        assert d.status == ends, f"{d.message}\n{events}"
        assert events.count("DeploymentSwitched") == 2, events      # the second one: resumed
        live = services.projections.app(APP).active.id
        assert live == (second if ends == "success" else first)
        answer = httpx.get(f"{host.url}/health")
        assert answer.headers["X-Release"] == live
        rig_worker.kill()


@pytest.mark.timeout(120)
def test_a_switched_deployment_taken_up_on_its_last_attempt_rolls_back_rather_than_try_again(
        rig_factory, tmp_path):
    rig = rig_factory(visibility_timeout=3.0)
    repo = rig.repo()
    repo.commit({"version": "v1"})
    with ReleaseHost(rig.target(APP), tmp_path / "host") as host:
        services = rig.configure({APP: git_app(
            repo, rig.target(APP), layout="site", retry={"attempts": 2, "base": "100ms", "max": "1s"},
            activate=[{"signal": {"pidfile": str(host.pidfile), "signal": "HUP"}}],
            health={"url": f"{host.url}/health", "interval": 0.1, "deadline": 10, "stable_for": 3})},
            lease_ttl="1s")
        worker = rig.start_worker()
        first = request_deployment(services, APP, repo.head(), "manual").deployment_id
        assert wait_until_ended(services, APP, first, timeout=60).status == "success"
        repo.commit({"version": "v2"})
        second = request_deployment(services, APP, repo.head(), "manual").deployment_id

        restarted = kill_at(rig, worker, services, second, "HealthCheckStarted", after=0.3)
        d = wait_until_ended(services, APP, second, timeout=60)

        assert d.status == "failed" and "not confirmed within 2 attempts" in d.message, d.message
        assert services.projections.app(APP).active.id == first
        assert wait_for(lambda: httpx.get(f"{host.url}/health").headers["X-Release"] == first,
                        timeout=10, what="the host to serve the first release again")
        restarted.kill()
