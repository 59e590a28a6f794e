"""`sluice notifier` killed with kill -9 while a receiver holds its request: started again
under its name it takes back what it held, or another notifier claims it after
`claim_after`; either way every event is delivered, in order, none skipped (the one cut
short twice, with the same X-Sluice-Delivery)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from orchestrator.core import events as ev
from orchestrator.core import keys, replies
from orchestrator.runtime.processes import die_with_parent, kill_group, terminate
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import sync_and_wait
from tests.servers.receiver import Receiver, receiver

pytestmark = pytest.mark.faults
STEPS = ["DeploymentQueued", "DeploymentStarted", "DeploymentSucceeded"]


class NotifierProcess:
    """`sluice notifier --name NAME` in its own process group, output in notifier-NAME.log."""

    def __init__(self, rig, name: str):
        self._log = open(rig.root / f"notifier-{name}.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "--config", str(rig.config_path), "notifier",
             "--name", name], env={**os.environ, "SLUICE_REDIS_URL": rig.redis_url},
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent)

    def kill(self) -> None:
        kill_group(self.proc)
        self._log.close()

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


def group_exists(client: redis.Redis) -> bool:
    try:
        return any(g["name"] == b"notifier" for g in client.xinfo_groups(keys.FEED))
    except redis.ResponseError:
        return False            # no feed yet


def feed_ids(services: Services) -> list[str]:
    return [replies.text(i) for i, f in replies.entries(services.redis.xrange(keys.FEED))
            if f[b"type"].decode() in STEPS]


def delivered(services: Services) -> list[str]:
    return [r.event.delivery for r in services.store.read("hello")
            if isinstance(r.event, ev.NotificationDelivered)]


@pytest.fixture
def held_delivery(rig_factory, tmp_path):
    """Two deployments of `hello` told to a webhook that holds the first request: the
    notifier `n1` killed with it in flight. Yields (start a notifier by name, services, the
    receiver, the deliveries due)."""
    with receiver() as hook:
        rig = rig_factory()
        repo = rig.repo()
        repo.commit(FUNCTION_APP)
        app = {**git_app(repo, rig.target("hello"), poll_interval="1h"),
               "notify": [{"type": "webhook", "url": hook.url, "events": STEPS}]}
        settings = {"backoff": "0.1s", "claim_after": "1h"}
        services = rig.configure({"hello": app}, notifier=settings)
        rig.start_worker()
        first = NotifierProcess(rig, "n1")
        wait_for(lambda: group_exists(services.redis), what="the notifier's group")
        hook.gate.clear()
        sync_and_wait(services, "hello")
        repo.commit({"host.json": '{"version": "2.0", "n": 2}'})
        sync_and_wait(services, "hello")
        hook.wait_until(1)
        first.kill()
        hook.gate.set()
        due = [f"{i}:0" for i in feed_ids(services)]
        assert len(due) == 6 and services.redis.xpending(keys.FEED, "notifier")["pending"] >= 6
        started: list[NotifierProcess] = []

        def start(name: str, claim_after: str) -> None:
            rig.configure({"hello": app}, notifier={**settings, "claim_after": claim_after})
            started.append(NotifierProcess(rig, name))
        try:
            yield start, services, hook, due
        finally:
            for notifier in started:
                notifier.stop()


def all_told(services: Services, hook: Receiver, due: list[str]) -> list[str]:
    wait_for(lambda: len(delivered(services)) == len(due), timeout=60, what="every delivery")
    wait_for(lambda: services.redis.xpending(keys.FEED, "notifier")["pending"] == 0,
             what="every feed entry acknowledged")
    return [r.delivery for r in hook.received]


def test_a_notifier_killed_mid_delivery_and_started_again_tells_every_event_in_order(held_delivery):
    start, services, hook, due = held_delivery
    start("n1", claim_after="1h")       # nothing claimed: what it takes back is its own

    got = all_told(services, hook, due)

    assert got == due[:1] + due             # the first cut short, then each once, in order
    assert delivered(services) == due


def test_another_notifier_takes_over_what_a_killed_one_held_after_claim_after(held_delivery):
    start, services, hook, due = held_delivery
    start("n2", claim_after="1s")

    got = all_told(services, hook, due)

    assert got == due[:1] + due
    assert delivered(services) == due
