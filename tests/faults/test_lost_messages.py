"""A deployment waiting to run whose message the broker no longer has, or has only in the
hands of a dead worker, is sent again by the reaper (orchestrator/deploying/reaper.py) within
about lease_ttl, not never (a message a killed worker took with BRPOP but had not yet
recorded as unacknowledged is gone for good) nor after the visibility timeout (300 s, as by
default, for one a dead worker held).

Each test leaves in Redis exactly what the fault leaves, with no worker running, then starts
one: killing a worker inside a window of a millisecond would make the test a lottery.
"""
from __future__ import annotations

import json
import time

import pytest

from orchestrator.deploying.deploy_messages import UNACKED, UNACKED_INDEX
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.deploying.task_queue import DEPLOY_QUEUE
from tests.helpers import git_app
from tests.integration.flow import tree, wait_until_ended

pytestmark = pytest.mark.faults

APP = "waiting"
LEASE_TTL = 2.0
VISIBILITY_TIMEOUT = 300.0
MARGIN = 25.0       # the reaper's two looks after lease_ttl, a worker's start and a deployment


def queued_with_no_worker(rig_factory):
    rig = rig_factory(visibility_timeout=VISIBILITY_TIMEOUT)
    repo = rig.repo()
    repo.commit({"index.html": "<h1>live</h1>\n"})
    services = rig.configure({APP: git_app(repo, rig.target(APP), layout="site")},
                             lease_ttl=f"{LEASE_TTL:.0f}s")
    deployment_id = request_deployment(services, APP, repo.head(), "manual").deployment_id
    message = services.redis.rpop(DEPLOY_QUEUE)
    assert message is not None
    return rig, services, deployment_id, message


@pytest.mark.timeout(120)
def test_a_deployment_whose_message_a_killed_worker_took_from_the_queue_still_goes_live(
        rig_factory):
    rig, services, deployment_id, _ = queued_with_no_worker(rig_factory)   # taken, then lost
    started = time.monotonic()
    rig.start_worker()

    view = wait_until_ended(services, APP, deployment_id, timeout=MARGIN)

    print(f"\nlive {time.monotonic() - started:.1f}s after a worker started")
    assert view.status == "success"
    assert tree(rig.target(APP)) == {"index.html": "<h1>live</h1>\n"}


@pytest.mark.timeout(120)
def test_a_deployment_whose_message_a_dead_worker_held_goes_live_before_the_visibility_timeout(
        rig_factory):
    rig, services, deployment_id, message = queued_with_no_worker(rig_factory)
    # What a worker that took the message and died leaves: kombu's record of it as held.
    services.redis.hset(UNACKED, "dead-worker-tag", json.dumps([json.loads(message), "", DEPLOY_QUEUE]))
    services.redis.zadd(UNACKED_INDEX, {"dead-worker-tag": time.time()})
    started = time.monotonic()
    rig.start_worker()

    view = wait_until_ended(services, APP, deployment_id, timeout=MARGIN)

    print(f"\nlive {time.monotonic() - started:.1f}s after a worker started")
    assert view.status == "success"
