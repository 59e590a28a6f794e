"""Replaying an app's stream on a real deployment gives the views the engine cached.
(What every event store must do is tested once for all of them in tests/contracts.)"""
from __future__ import annotations

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.projections import Projections, replay
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


class StreamBegunAgainWhileFolding:
    """The store as a reader sees it when, between its reading an app's events and saving
    the folded view, the app's stream is deleted and begun again (a test cleaning Redis)."""

    def __init__(self, store, client, app):
        self.store, self.client, self.app = store, client, app

    def read(self, app, after_id=None):
        read = self.store.read(app, after_id)
        self.client.delete(keys.app_events(self.app))
        self.store.append(self.app, [ev.AppPaused(app=self.app, at=2.0, reason="new stream")], 0)
        return read

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_view_folded_from_a_stream_deleted_meanwhile_is_not_saved_over_the_new_stream(workspace):
    services = workspace.configure({})
    store, client = services.store, services.redis
    store.append("gone", [ev.ChangeDetected(app="gone", at=1.0, revision="a" * 40, trigger="poll")], 0)

    Projections(StreamBegunAgainWhileFolding(store, client, "gone"), client).app("gone")

    view = Projections(store, client).app("gone")
    assert view.last_revision is None and view.paused == "new stream"
