"""The poller's scheduling on a real Redis, with a fake clock."""
from __future__ import annotations

import random

import pytest

from orchestrator.config.settings import load_config
from orchestrator.core import keys
from orchestrator.core.clock import FakeClock
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.deploying.sync import sync_now
from orchestrator.runtime.services import Services
from orchestrator.triggers.poller import Poller
from tests.helpers import FUNCTION_APP, git_app
from tests.integration.flow import wait_until_ended


@pytest.fixture
def clock():
    return FakeClock()


def services_with(workspace, clock, apps) -> Services:
    workspace.configure(apps)
    return Services.build(load_config(workspace.config_path), clock)


def due(client) -> dict[str, float]:
    return {m.decode(): s for m, s in client.zrange(keys.POLL_DUE, 0, -1, withscores=True)}


def test_a_due_source_is_claimed_by_one_poller_only(workspace, clock, clean_redis):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = services_with(workspace, clock, {"hello": git_app(repo, workspace.target("hello"))})
    first, second = Poller(services), Poller(services)
    first.register()

    assert [r.app for r in first.tick()] == ["hello"]
    assert second.tick() == []


def test_after_a_check_the_next_one_is_due_one_interval_later_with_jitter(workspace, clock, clean_redis):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    app = git_app(repo, workspace.target("hello"), poll_interval="30s")
    services = services_with(workspace, clock, {"hello": app})
    poller = Poller(services, rng=random.Random(1))
    poller.register()

    poller.tick()

    assert 27 <= due(clean_redis)["hello"] - clock.now() <= 33
    assert poller.tick() == []


def test_a_failing_head_check_backs_off_and_deploys_nothing(workspace, clock, clean_redis):
    app = {"target": str(workspace.target("gone")),
           "source": {"type": "git", "url": str(workspace.root / "missing"), "poll_interval": "10s"}}
    services = services_with(workspace, clock, {"gone": app})
    poller = Poller(services, rng=random.Random(1))
    poller.register()
    delays = []
    for _ in range(4):
        result = poller.tick()[0]
        assert result.error and "missing" in result.error
        delays.append(due(clean_redis)["gone"] - clock.now())
        clock.advance(delays[-1])

    assert delays == sorted(delays) and delays[-1] > 40
    assert services.store.read("gone") == []
    assert int(clean_redis.hget(keys.POLL_FAILURES, "gone")) == 4


def test_registering_schedules_new_apps_and_forgets_removed_ones(workspace, clock, clean_redis):
    repo = workspace.repo()
    clean_redis.zadd(keys.POLL_DUE, {"removed": 0})
    services = services_with(workspace, clock, {"hello": git_app(repo, workspace.target("hello"))})

    Poller(services).register()

    assert due(clean_redis) == {"hello": clock.now()}


def test_a_head_already_seen_is_not_deployed_again_after_the_cursor_is_lost(workspace, clock, clean_redis):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = services_with(workspace, clock, {"hello": git_app(repo, workspace.target("hello"))})
    poller = Poller(services)
    poller.register()
    first = poller.tick()[0].queued
    assert first.new
    # ended before the test ends: the worker appending to a cleaned stream would leave the
    # next test's app a deployment of this same revision (commits here are deterministic)
    wait_until_ended(services, "hello", first.deployment_id)
    clean_redis.delete(keys.POLL_CURSOR)
    clock.advance(60)

    assert poller.tick()[0].queued is None


def put_live_late(services: Services, revision: str) -> None:
    """What a late or replayed trigger did before triggers deployed heads: queue `revision`."""
    wait_until_ended(services, "hello",
                     request_deployment(services, "hello", revision, "webhook").deployment_id)


def test_an_older_revision_put_live_by_a_late_trigger_is_replaced_by_the_head_at_the_next_check(
        workspace, clock, clean_redis):
    repo = workspace.repo()
    old = repo.commit(FUNCTION_APP)
    services = services_with(workspace, clock, {"hello": git_app(repo, workspace.target("hello"))})
    poller = Poller(services)
    poller.register()
    wait_until_ended(services, "hello", poller.tick()[0].queued.deployment_id)
    head = repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'fixed'\n"})
    clock.advance(60)
    wait_until_ended(services, "hello", poller.tick()[0].queued.deployment_id)
    put_live_late(services, old)
    clock.advance(60)

    again = poller.tick()[0].queued

    assert again.new and again.revision == head
    assert wait_until_ended(services, "hello", again.deployment_id).status == "success"
    clock.advance(60)
    assert poller.tick()[0].queued is None      # on its head: nothing more to do


def test_sync_deploys_the_branch_head_not_the_revision_last_seen(workspace, clock, clean_redis):
    repo = workspace.repo()
    old = repo.commit(FUNCTION_APP)
    services = services_with(workspace, clock, {"hello": git_app(repo, workspace.target("hello"))})
    sync_now(services, "hello")
    head = repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'fixed'\n"})
    wait_until_ended(services, "hello", sync_now(services, "hello").deployment_id)
    put_live_late(services, old)

    queued = sync_now(services, "hello")

    assert queued.new and queued.revision == head
