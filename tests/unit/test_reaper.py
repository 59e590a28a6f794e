"""A deployment whose worker was lost, on an app's stream in memory: the reaper, looking with
the app's lease free, ends the lost attempt and sends the next one — and leaves alone what
a live worker still holds or has just let go."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.settings import AppConfig, RetryPolicy, SluiceConfig
from orchestrator.core import events as ev
from orchestrator.core.clock import FakeClock
from orchestrator.core.decisions import execute
from orchestrator.core.events import EventType
from orchestrator.core.memory_store import MemoryEventStore, MemoryViewCache
from orchestrator.core.projections import Projections
from orchestrator.deploying.deploy_messages import DeployMessage
from orchestrator.deploying.reaper import LOST, Reaper, decide_lost, interval, stranded, suspects
from orchestrator.runtime.services import Services

APP = "hello"


class World:
    """One app's stream in memory, its lease (free or not), the tasks sent and the broker's
    messages (a task sent waits in the queue)."""

    def __init__(self, attempts: int = 3):
        config = SluiceConfig(lease_ttl=30.0, apps={APP: AppConfig(
            target=Path("/srv/hello"), retry=RetryPolicy(attempts=attempts))})
        self.services = Services(config, FakeClock())
        store = MemoryEventStore()
        self.services.__dict__.update(store=store, projections=Projections(store, MemoryViewCache()))
        self.lease_free, self.sent, self.messages = True, [], []
        self.reaper = Reaper(self.services, lease_free=lambda app: self.lease_free,
                             send=self.send, messages=lambda: list(self.messages))

    def send(self, app: str, deployment_id: str, attempt: int) -> None:
        self.sent.append((app, deployment_id, attempt))
        self.messages.append(DeployMessage(deployment_id))

    def record(self, *events: ev.Event) -> None:
        execute(self.services.projections, APP, lambda view: events)

    def queue(self, deployment_id: str, message: bool = True) -> None:
        """As dispatch queues a deployment: the event, then its message (unless lost)."""
        self.record(ev.DeploymentQueued(app=APP, at=1.0, deployment_id=deployment_id,
                                        revision=f"r-{deployment_id}", trigger="poll"))
        if message:
            self.messages.append(DeployMessage(deployment_id))

    def start(self, deployment_id: str, attempt: int = 1) -> None:
        self.record(ev.DeploymentStarted(app=APP, at=2.0, deployment_id=deployment_id,
                                         worker="host:1", attempt=attempt))

    def look(self) -> list:
        self.services.clock.sleep(interval(self.services.config.lease_ttl))
        return self.reaper.look()

    def types(self, deployment_id: str) -> list[str]:
        return [r.event.type for r in self.services.store.read(APP)
                if getattr(r.event, "deployment_id", None) == deployment_id]

    def status(self, deployment_id: str) -> str:
        return self.services.projections.app(APP).deployments[deployment_id].status


@pytest.fixture
def world() -> World:
    world = World()
    world.queue("d1")
    world.start("d1")
    return world


def test_a_running_deployment_under_a_free_lease_at_two_looks_is_retried_at_once(world):
    assert world.look() == []               # the first look only takes note

    done = world.look()

    assert [(app, suspect, after.retry_in) for app, suspect, after in done] == [
        (APP, ("d1", 1), 0.0)]
    retrying = world.services.store.read(APP)[-1].event
    assert isinstance(retrying, ev.DeploymentRetrying)
    assert (retrying.attempt, retrying.reason, retrying.retry_in) == (1, LOST, 0.0)
    assert world.status("d1") == "pending"
    assert world.sent == [(APP, "d1", 2)]


def test_it_is_resumed_once_however_often_the_reaper_looks(world):
    for _ in range(5):
        world.look()

    assert world.types("d1").count(EventType.DEPLOYMENT_RETRYING) == 1
    assert world.sent == [(APP, "d1", 2)]


def test_a_deployment_whose_lease_is_held_is_left_running(world):
    world.lease_free = False
    for _ in range(3):
        world.look()

    assert world.status("d1") == "building" and world.sent == []


def test_a_lease_seen_free_once_between_two_held_is_not_a_lost_worker(world):
    world.look()                            # free: the worker between two steps, say
    world.lease_free = False
    world.look()
    world.lease_free = True
    world.look()

    assert world.status("d1") == "building" and world.sent == []


def test_a_new_attempt_started_between_two_looks_is_not_taken_for_the_lost_one(world):
    world.look()
    world.start("d1", attempt=2)            # another worker took it up meanwhile
    world.look()

    assert world.status("d1") == "building" and world.sent == []


def test_a_deployment_that_ended_between_two_looks_gets_no_further_event(world):
    world.look()
    world.record(ev.DeploymentSucceeded(app=APP, at=3.0, deployment_id="d1", snapshot="s",
                                        release="/releases/d1"))
    world.look()

    assert world.types("d1")[-1] == EventType.DEPLOYMENT_SUCCEEDED and world.sent == []


def test_a_lost_last_attempt_fails_the_deployment_and_sends_nothing():
    world = World(attempts=2)
    world.queue("d1")
    world.start("d1", attempt=2)
    world.look()
    world.look()

    assert world.status("d1") == "failed" and world.sent == []
    assert world.services.projections.app(APP).deployments["d1"].message == \
        f"gave up after 2 attempts: {LOST}"


def test_a_lost_deployment_with_a_newer_one_waiting_gives_way_to_it(world):
    world.queue("d2")
    world.look()
    world.look()

    assert world.status("d1") == "superseded" and world.status("d2") == "pending"
    assert world.sent == [(APP, "d2", 1)]


def test_a_task_redis_refused_to_take_is_sent_at_the_next_look(world):
    refused: list = []

    def send_once_redis_is_back(*task):
        if not refused:
            refused.append(task)
            raise ConnectionError("redis away")
        world.sent.append(task)

    world.reaper.send = send_once_redis_is_back         # (sent, the message is not looked at)
    world.look()
    with pytest.raises(ConnectionError):
        world.look()
    world.look()

    assert world.status("d1") == "pending" and world.sent == [(APP, "d1", 2)]


def test_the_config_is_read_at_every_look_so_an_app_added_later_keeps_its_retry_policy(world):
    configured = world.services.config
    world.services.config = SluiceConfig(lease_ttl=30.0)    # what the worker started with
    world.reaper.config = lambda: configured                 # the file as it is now
    world.look()
    world.look()

    assert world.status("d1") == "pending" and world.sent == [(APP, "d1", 2)]


def test_pending_and_ended_deployments_are_no_suspects(world):
    world.queue("d2")
    view = world.services.projections.app(APP)

    assert suspects(view, lease_free=True) == {("d1", 1)}
    assert suspects(view, lease_free=False) == set()


def test_the_decision_leaves_a_deployment_that_moved_on_alone(world):
    view = world.services.projections.app(APP)

    assert decide_lost(view, ("d1", 2), RetryPolicy(), now=5.0) == ([], None)
    assert decide_lost(view, ("gone", 1), RetryPolicy(), now=5.0) == ([], None)


def test_looks_are_at_most_two_seconds_apart_and_three_to_a_lease_ttl():
    assert interval(30.0) == 2.0 and interval(3.0) == 1.0


# --- deployments waiting with no message in the broker ------------------------------------

def waiting_world(**message) -> World:
    """d1 queued; its message lost, or as given (held_since, eta: unix times)."""
    world = World()
    world.queue("d1", message=False)
    if message:
        world.messages.append(DeployMessage("d1", **message))
    return world


def test_a_queued_deployment_whose_message_was_lost_is_sent_again_after_two_looks():
    world = waiting_world()
    world.look()
    assert world.sent == []                 # the first look only takes note

    world.look()
    world.look()

    assert world.sent == [(APP, "d1", 1)]   # once: the message sent waits in the queue
    assert world.status("d1") == "pending"


def test_a_deployment_whose_message_waits_in_the_queue_is_left_to_the_workers():
    world = waiting_world(held_since=None)
    for _ in range(3):
        world.look()

    assert world.sent == []


def test_a_message_held_by_a_worker_counts_for_a_lease_ttl_after_it_was_taken_or_came_due():
    now, ttl = 1000.0, 30.0
    assert DeployMessage("d1", held_since=now - ttl + 1).alive(now, ttl)
    assert not DeployMessage("d1", held_since=now - ttl - 1).alive(now, ttl)
    assert DeployMessage("d1", held_since=now - 100, eta=now - ttl + 1).alive(now, ttl)
    assert not DeployMessage("d1", held_since=now - 100, eta=now - ttl - 1).alive(now, ttl)


def test_a_retry_held_by_a_dead_worker_past_its_countdown_is_sent_again_as_the_next_attempt():
    world = waiting_world()
    world.start("d1", attempt=1)
    world.record(ev.DeploymentRetrying(app=APP, at=3.0, deployment_id="d1", attempt=1,
                                       reason="timeout", retry_in=5.0))
    now = world.services.clock.now()
    world.messages.append(DeployMessage("d1", held_since=now - 100, eta=now - 95))
    world.look()
    world.look()

    assert world.sent == [(APP, "d1", 2)]


def test_a_message_seen_missing_once_is_not_sent_again_when_it_shows_up():
    world = waiting_world()
    world.look()                            # between the event and its message, say
    world.messages.append(DeployMessage("d1"))
    world.look()

    assert world.sent == []


def test_only_waiting_deployments_can_be_stranded(world):
    world.queue("d2", message=False)
    waiting = {APP: world.services.projections.app(APP).waiting()}

    assert stranded(waiting, [], now=1000.0, grace=30.0) == {(APP, "d2", 1)}
