"""Replaying an app's stream on a real deployment gives the views the engine cached.
(What every event store must do is tested once for all of them in tests/contracts.)"""
from __future__ import annotations

from orchestrator.core.projections import replay
from tests.helpers import FUNCTION_APP
from tests.integration.flow import sync_and_wait


def test_replaying_the_streams_rebuilds_the_same_projections(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    repo.commit({"HttpHello/function.json": "broken"})
    sync_and_wait(services, "hello")
    sync_and_wait(services, "hello")
    cached = services.projections.app("hello")

    rebuilt = services.projections.rebuild("hello")

    assert rebuilt == cached and rebuilt.history() == cached.history()
    replayed = replay("hello", services.store.read("hello"))
    assert replayed == cached and replayed.history() == cached.history()
    assert [d.status for d in rebuilt.history()] == ["failed", "failed", "success"]
