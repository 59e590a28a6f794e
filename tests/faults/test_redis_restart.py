"""redis-server (AOF on) stopped and started again in the middle of a run of deployments.

Redis is stopped gracefully (SIGTERM: it writes its AOF out and exits), stays away for a
while, and comes back on the same port from the same files. The test's own calls retry while
it is away, as any client of Sluice would.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter

import kombu.exceptions
import pytest
import redis
from kombu import Consumer, Exchange, Producer, Queue
from kombu.common import ignore_errors

from orchestrator.core import keys
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.deploying.task_queue import DEPLOY_QUEUE, create_app
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import terminate
from tests.helpers import git_app, wait_for
from tests.integration.flow import tree

APP = "steady"
DEPLOYMENTS = 15
# Redis goes away while these deployments run, right after the event named: still queued,
# fetching, materialising.
RESTART_AFTER = {3: "DeploymentQueued", 7: "DeploymentStarted", 11: "SnapshotBuilt"}
DOWN_FOR = 2.0                      # seconds redis stays away
VISIBILITY_TIMEOUT = 5.0
AWAY = (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError)


class Patient:
    """Calls that wait out a Redis that is away (counting how often they had to)."""

    def __init__(self, timeout: float = 60):
        self.timeout, self.retries = timeout, 0

    def __call__(self, fn, *args, **kwargs):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return fn(*args, **kwargs)
            except AWAY:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(0.1)


def files(version: int) -> dict[str, str]:
    return {"index.html": f"version {version}\n",
            **{f"pages/p{i:03d}.html": f"page {i} of version {version}\n" for i in range(400)}}


def last_event(services) -> str | None:
    entries = services.redis.xrevrange(keys.app_events(APP), count=1)
    return entries[0][1][b"type"].decode() if entries else None


def describe(recorded) -> list[tuple]:
    return [(r.version, r.id, r.event.type, r.event) for r in recorded]


@pytest.mark.timeout(300)
def test_redis_restarted_mid_run_loses_no_event_and_every_deployment_ends(rig_factory):
    rig = rig_factory(visibility_timeout=VISIBILITY_TIMEOUT)
    repo = rig.repo()
    repo.commit(files(0))
    services = rig.configure({APP: git_app(repo, rig.target(APP), layout="site",
                                           retry={"attempts": 5, "base": "500ms", "max": "2s"})},
                             lease_ttl="3s")
    rig.start_worker()
    call = Patient()
    started = time.monotonic()
    queued, seen_before, outages = [], [], []

    def view():
        return call(services.projections.app, APP)

    def wait_ended(deployment_id: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not view().deployments[deployment_id].terminal:
            if time.monotonic() > deadline:
                story = [f"  {r.version} {r.event}" for r in call(services.store.read, APP)
                         if getattr(r.event, "deployment_id", None) == deployment_id]
                raise AssertionError(f"deployment {deployment_id} did not end within {timeout}s:\n"
                                     + "\n".join(story) + "\n" + rig.workers_state())
            time.sleep(0.05)

    for n in range(1, DEPLOYMENTS + 1):
        revision = repo.commit(files(n), f"version {n}")
        q = call(request_deployment, services, APP, revision, "manual")
        queued.append(q.deployment_id)
        if n in RESTART_AFTER:
            wait_for(lambda: last_event(services) in (RESTART_AFTER[n], "DeploymentSucceeded"),
                     interval=0.001, what=f"{RESTART_AFTER[n]} of deployment {n}")
            seen_before = call(services.store.read, APP)
            phase = seen_before[-1].event.type
            rig.stop_redis()
            down_at = time.monotonic()
            # meanwhile, a change arrives: queued once Redis is back (the call waits)
            revision = repo.commit(files(n) | {"during-outage.txt": f"{n}\n"}, "during outage")
            arrived: list = []
            change = threading.Thread(target=lambda: arrived.append(
                call(request_deployment, services, APP, revision, "manual")))
            change.start()
            time.sleep(max(0.0, DOWN_FOR - (time.monotonic() - down_at)))
            # from this thread: redis-server dies with the thread that started it (PDEATHSIG)
            rig.restart_redis()
            change.join(60)
            q = arrived[0]
            queued.append(q.deployment_id)
            recorded = call(services.store.read, APP)
            assert describe(recorded[:len(seen_before)]) == describe(seen_before), \
                "events recorded before the restart changed or went missing"
            wait_ended(q.deployment_id)
            outages.append((phase, time.monotonic() - down_at))
        else:
            wait_ended(q.deployment_id)

    for deployment_id in queued:        # the ones in flight at a restart included
        wait_ended(deployment_id, timeout=VISIBILITY_TIMEOUT + 30)
    final = view()
    recorded = call(services.store.read, APP)
    statuses = {d: final.deployments[d].status for d in queued}
    print(f"\n{len(queued)} deployments in {time.monotonic() - started:.1f}s, "
          f"{len(outages)} restarts of redis ({DOWN_FOR:.0f}s away each), "
          f"{call.retries} retried calls while it was away")
    print("restart during (last event before it) -> next deployment ended: " + ", ".join(
        f"{phase} {seconds:.1f}s" for phase, seconds in outages))
    print(f"statuses: {dict(Counter(statuses.values()))}, {len(recorded)} events")

    assert [r.version for r in recorded] == list(range(1, len(recorded) + 1))
    went_live = [queued.index(r.event.deployment_id) for r in recorded
                 if r.event.type == "DeploymentSucceeded"]
    assert went_live == sorted(went_live), "an older deployment went live after a newer one"
    assert all(final.deployments[d].terminal for d in queued), statuses
    assert "failed" not in statuses.values(), [
        (d, final.deployments[d].message) for d in queued if statuses[d] == "failed"]
    assert final.active.id == queued[-1] and final.active.revision == repo.head()
    assert tree(rig.target(APP)) == files(DEPLOYMENTS) | {"during-outage.txt": f"{max(RESTART_AFTER)}\n"}
    assert call(services.projections.rebuild, APP).deployments == final.deployments


def test_an_embedded_redis_started_again_at_once_comes_back_on_its_port(tmp_path):
    proc, url = start_redis(tmp_path)
    client = redis.Redis.from_url(url)
    client.set("kept", "yes")       # a client connected while redis stops, as in any run
    terminate(proc)                 # redis closes it first: its port's side is in TIME_WAIT
    client.close()
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    proc, again = start_redis(tmp_path, port)
    try:
        assert again == url
        assert redis.Redis.from_url(again).get("kept") == b"yes"
    finally:
        terminate(proc)


@pytest.mark.timeout(120)
def test_a_deployment_recorded_just_before_redis_went_away_still_runs(rig_factory, monkeypatch):
    from orchestrator.deploying import dispatch
    rig = rig_factory(visibility_timeout=VISIBILITY_TIMEOUT)
    repo = rig.repo()
    repo.commit(files(1))
    services = rig.configure({APP: git_app(repo, rig.target(APP), layout="site")})
    rig.start_worker()
    real_enqueue = dispatch.enqueue

    def redis_goes_away_first(*args, **kwargs):
        monkeypatch.setattr(dispatch, "enqueue", real_enqueue)
        rig.stop_redis()
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(dispatch, "enqueue", redis_goes_away_first)
    call, arrived = Patient(), []
    change = threading.Thread(target=lambda: arrived.append(
        call(request_deployment, services, APP, repo.head(), "manual")))
    change.start()
    wait_for(lambda: rig.redis_proc.poll() is not None, what="redis to stop")
    time.sleep(DOWN_FOR)
    rig.restart_redis()
    change.join(60)

    d = arrived[0].deployment_id
    print(f"\nthe retried request: {arrived[0]}")
    wait_for(lambda: call(services.projections.app, APP).deployments[d].terminal,
             timeout=VISIBILITY_TIMEOUT + 10, what=f"deployment {d} to end")


def test_a_worker_connection_closed_while_redis_is_away_with_a_task_held_closes_cleanly(tmp_path):
    """What Celery does when Redis goes away under a worker that holds an unacknowledged task
    and waits on BRPOP: collect() the connection, then close() it. kombu's own transport
    raised AttributeError there, which Celery took for unrecoverable: the worker exited."""
    proc, url = start_redis(tmp_path)
    connection = create_app(url).connection_for_read()
    channel = connection.default_channel
    queue = Queue(DEPLOY_QUEUE, channel=channel)
    # and, as Celery's remote control has, an auto-deleted fanout queue
    control = Queue("sluice-test.pidbox", Exchange("sluice-test.pidbox", type="fanout"),
                    auto_delete=True, channel=channel)
    for q in (queue, control):
        q.declare()
    Producer(channel).publish({"held": True}, routing_key=DEPLOY_QUEUE)
    held = []
    Consumer(channel, [queue, control],
             callbacks=[lambda body, message: held.append(message)]).consume()
    connection.drain_events(timeout=5)
    with contextlib.suppress(socket.timeout):
        connection.drain_events(timeout=0.2)        # leaves a BRPOP in flight
    assert len(held) == 1 and channel._in_poll
    terminate(proc)

    with contextlib.suppress(Exception):            # as Celery calls them
        connection.collect(socket_timeout=1)
    ignore_errors(connection, connection.close)

    proc, _ = start_redis(tmp_path, int(url.rsplit(":", 1)[1].split("/")[0]))
    try:    # the held task waits in Redis's unacked set for the visibility timeout
        assert redis.Redis.from_url(url).hlen("unacked") == 1
    finally:
        terminate(proc)
