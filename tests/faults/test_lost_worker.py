"""kill -9 of a worker (main process and pool child) in the middle of a deployment, with a
second worker running: the deployment is taken up again once the app's lease lapses (the
reaper, orchestrator/deploying/reaper.py), not when the broker hands its task out again
after the visibility timeout (300 s, as by default).

The deployment's fetch goes over ssh to tests/servers/fake_ssh.py, held while a `hold` file
lies beside the key: so the kill lands while the deployment is surely `building`.
"""
from __future__ import annotations

import time

import pytest

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.deploying.reaper import LOST
from tests.helpers import git_app, wait_for
from tests.integration.flow import tree

APP = "held"
SITE = {"index.html": "<h1>after the kill</h1>\n"}
LEASE_TTL = 3.0
VISIBILITY_TIMEOUT = 300.0
# Lease expiry, two looks of the reaper and a deployment on a loaded machine; far below the
# visibility timeout, which is what a deployment without the reaper waits for.
MARGIN = 20.0


def deployment_events(services, deployment_id: str) -> list:
    return [r.event for r in services.store.read(APP)
            if getattr(r.event, "deployment_id", None) == deployment_id]


@pytest.mark.timeout(180)
def test_a_deployment_whose_worker_was_killed_is_taken_up_again_once_its_lease_lapses(
        rig_factory):
    rig = rig_factory(visibility_timeout=VISIBILITY_TIMEOUT)
    repo = rig.repo()
    repo.commit(SITE)
    key = rig.root / "keys" / "deploy_ed25519"
    key.parent.mkdir()
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    key.chmod(0o600)
    services = rig.configure({APP: {
        "layout": "site", "target": str(rig.target(APP)),
        "source": {"type": "git", "url": f"ssh://git@ssh.sluice.test{repo.path}",
                   "ssh_key": str(key)}}}, lease_ttl=f"{LEASE_TTL:.0f}s")
    hold = key.parent / "hold"
    hold.touch()
    first = rig.start_worker()
    d = request_deployment(services, APP, repo.head(), "manual").deployment_id
    wait_for(lambda: (key.parent / "ssh.log").exists(), timeout=60,
             what="the first worker's fetch to reach the source")
    second = rig.start_worker()

    first.kill()
    killed_at = time.monotonic()
    hold.unlink()
    wait_for(lambda: services.projections.app(APP).deployments[d].terminal,
             timeout=LEASE_TTL + MARGIN, interval=0.05,
             what=f"deployment {d} to end after its worker was killed")
    print(f"\nkill -9 -> deployment ended: {time.monotonic() - killed_at:.1f}s "
          f"(lease_ttl {LEASE_TTL:.0f}s, visibility timeout {VISIBILITY_TIMEOUT:.0f}s)")

    events = deployment_events(services, d)
    assert [e.type for e in events] == [
        "DeploymentQueued", "DeploymentStarted", "DeploymentRetrying", "DeploymentStarted",
        "SnapshotBuilt", "DeploymentSwitched", "DeploymentSucceeded"], events
    lost, again = events[2], events[3]
    assert (lost.attempt, lost.reason, lost.retry_in) == (1, LOST, 0.0)
    assert again.attempt == 2 and again.worker != events[1].worker
    assert tree(rig.target(APP)) == SITE
    assert second.proc.poll() is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("plain_celery", [False, True], ids=["sluice worker", "celery worker"])
def test_a_started_deployment_whose_task_is_gone_still_ends(rig_factory, plain_celery):
    """What a Redis restart can leave (test_redis_restart): a task that met Redis away waits
    for it at most the visibility timeout, then Celery cannot send its retry and rejects it
    without requeueing; the deployment stays `started` with no message anywhere. A worker
    started with `celery -A workers.celery_app worker` runs the reaper as well."""
    rig = rig_factory(visibility_timeout=VISIBILITY_TIMEOUT)
    repo = rig.repo()
    repo.commit(SITE)
    services = rig.configure({APP: git_app(repo, rig.target(APP), layout="site")},
                             lease_ttl=f"{LEASE_TTL:.0f}s")
    rig.start_worker(plain_celery=plain_celery)
    at = services.clock.now()
    execute(services.projections, APP, lambda view: [
        ev.DeploymentQueued(app=APP, at=at, deployment_id="d1", revision=repo.head(),
                            trigger="manual"),
        ev.DeploymentStarted(app=APP, at=at, deployment_id="d1", worker="gone:1")])

    wait_for(lambda: services.projections.app(APP).deployments["d1"].terminal,
             timeout=LEASE_TTL + MARGIN, interval=0.05, what="the stranded deployment to end")

    assert [e.type for e in deployment_events(services, "d1")][2:] == [
        "DeploymentRetrying", "DeploymentStarted", "SnapshotBuilt", "DeploymentSwitched",
        "DeploymentSucceeded"]
    assert tree(rig.target(APP)) == SITE
