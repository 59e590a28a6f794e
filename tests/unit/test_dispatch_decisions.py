"""What a requested deployment decides, on an app's stream in memory: dedupe, coalescing,
pausing. The same pure decision request_deployment appends to Redis and then enqueues."""
from __future__ import annotations

import itertools

import pytest

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute, execute_with_outcome
from orchestrator.core.memory_store import MemoryEventStore, MemoryViewCache
from orchestrator.core.projections import AppView, Projections
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.dispatch import DeploymentRequest, Queued, behind_head, decide_deployment

APP = "hello"


class App:
    """One app's stream in memory and the requests made of it, numbered d1, d2, ..."""

    def __init__(self):
        self.store = MemoryEventStore()
        self.projections = Projections(self.store, MemoryViewCache())
        self._ids = itertools.count(1)

    def request(self, revision: str, trigger: str = "poll", snapshot: str | None = None,
                force: bool = False) -> Queued:
        n = next(self._ids)
        request = DeploymentRequest(APP, revision, trigger, f"d{n}", float(n), snapshot,
                                    force=force)
        return execute_with_outcome(self.projections, APP, lambda v: decide_deployment(v, request))[2]

    def record(self, *events: ev.Event) -> None:
        execute(self.projections, APP, lambda view: events)

    def view(self) -> AppView:
        return self.projections.app(APP)

    def types(self) -> list[str]:
        return [r.event.type for r in self.store.read(APP)]

    def statuses(self) -> dict[str, str]:
        return {d.id: d.status for d in self.view().deployments.values()}


@pytest.fixture
def app() -> App:
    return App()


def started(deployment_id: str) -> ev.DeploymentStarted:
    return ev.DeploymentStarted(app=APP, at=10.0, deployment_id=deployment_id, worker="w")


def succeeded(deployment_id: str) -> ev.DeploymentSucceeded:
    return ev.DeploymentSucceeded(app=APP, at=11.0, deployment_id=deployment_id, snapshot="s",
                                  release=f"/releases/{deployment_id}")


def test_a_new_revision_is_recorded_as_a_change_and_queued(app):
    queued = app.request("r1")

    assert queued == Queued("d1", "r1", True)
    assert app.types() == ["ChangeDetected", "DeploymentQueued"]
    assert app.view().waiting()[0].id == "d1" and app.view().last_revision == "r1"


def test_a_change_to_the_revision_already_waiting_queues_nothing_new(app):
    app.request("r1")

    again = app.request("r1")

    assert (again.deployment_id, again.new, again.status) == ("d1", False, DeploymentStatus.PENDING)
    assert again.reason == "deployment d1 is already pending"
    assert app.types() == ["ChangeDetected", "DeploymentQueued"]


def test_a_change_to_the_revision_being_built_is_covered_by_that_deployment(app):
    app.request("r1")
    app.record(started("d1"))

    again = app.request("r1", trigger="manual")

    assert (again.deployment_id, again.new, again.status) == ("d1", False, DeploymentStatus.BUILDING)


def test_an_automatic_change_to_the_live_revision_queues_nothing_but_a_manual_sync_deploys_it(app):
    app.request("r1")
    app.record(started("d1"), succeeded("d1"))

    polled = app.request("r1")
    synced = app.request("r1", trigger="manual")

    assert (polled.new, polled.reason) == (False, "revision is already live (d1)")
    assert synced == Queued("d3", "r1", True)


def test_a_new_deployment_supersedes_every_one_still_waiting_so_only_the_newest_deploys(app):
    app.request("r1")
    app.request("r2")
    newest = app.request("r3")

    assert newest.new
    assert app.statuses() == {"d1": "superseded", "d2": "superseded", "d3": "pending"}
    assert [d.id for d in app.view().waiting()] == ["d3"]
    messages = {d.id: d.message for d in app.view().deployments.values()}
    assert (messages["d1"], messages["d2"]) == ("superseded by d2", "superseded by d3")


def test_a_deployment_already_running_is_not_superseded_by_a_newer_change(app):
    app.request("r1")
    app.record(started("d1"))

    app.request("r2")

    assert app.statuses() == {"d1": "building", "d2": "pending"}


def test_a_paused_app_records_automatic_changes_but_does_not_deploy_them(app):
    app.record(ev.AppPaused(app=APP, at=0.5, reason="rolled back to d0"))

    for trigger in ("poll", "webhook", "push"):
        queued = app.request(f"r-{trigger}", trigger=trigger)
        assert (queued.deployment_id, queued.new) == (None, False)
        assert queued.reason == "app is paused (rolled back to d0)"

    assert app.types() == ["AppPaused"] + ["ChangeDetected"] * 3
    assert app.view().last_revision == "r-push" and app.view().deployments == {}


def test_a_paused_app_still_deploys_what_an_operator_asks_for(app):
    app.record(ev.AppPaused(app=APP, at=0.5, reason="maintenance"))

    assert app.request("r1", trigger="manual").new
    assert app.request("r1", trigger="redeploy", snapshot="s1").new


def test_a_redeploy_of_a_snapshot_is_not_covered_by_a_build_of_the_same_revision(app):
    app.request("r1")

    redeploy = app.request("r1", trigger="redeploy", snapshot="s-old")

    assert redeploy == Queued("d2", "r1", True)
    assert app.statuses() == {"d1": "superseded", "d2": "pending"}


def test_the_same_revision_detected_twice_is_one_change(app):
    app.request("r1")
    app.request("r1")
    app.request("r2")

    assert app.types().count("ChangeDetected") == 2


def failed(deployment_id: str) -> ev.DeploymentFailed:
    return ev.DeploymentFailed(app=APP, at=11.0, deployment_id=deployment_id, reason="broken")


def test_an_app_on_its_head_or_deploying_it_is_not_behind(app):
    app.request("r1")
    assert not behind_head(app.view(), "r1")            # waiting
    app.record(started("d1"))
    assert not behind_head(app.view(), "r1")            # building
    app.record(succeeded("d1"))
    assert not behind_head(app.view(), "r1")            # live


def test_an_app_an_older_revision_went_live_over_is_behind_its_head(app):
    app.request("new")
    app.record(started("d1"), succeeded("d1"))
    app.request("old", trigger="webhook")               # a late or replayed trigger
    app.record(started("d2"), succeeded("d2"))

    assert behind_head(app.view(), "new")


def test_an_app_whose_head_was_superseded_by_an_older_revision_is_behind(app):
    app.request("new")
    app.request("old", trigger="webhook")               # supersedes d1 before it ran
    app.record(started("d2"), succeeded("d2"))

    assert app.statuses()["d1"] == "superseded" and behind_head(app.view(), "new")


def test_a_head_that_failed_or_an_app_paused_or_put_back_by_an_operator_is_left_alone(app):
    app.request("old")
    app.record(started("d1"), succeeded("d1"))
    app.request("new")
    app.record(started("d2"), failed("d2"))
    assert not behind_head(app.view(), "new")           # it waits for a new change

    app.request("old", trigger="redeploy", snapshot="s")
    app.record(started("d3"), succeeded("d3"))
    assert not behind_head(app.view(), "newer")         # an operator chose what is live

    app.record(ev.AppPaused(app=APP, at=20.0, reason="maintenance"))
    assert not behind_head(app.view(), "newer")


def rolled_back(deployment_id: str, revision: str) -> list[ev.Event]:
    """What a deployment whose health check failed leaves: switched, rejected, rolled back."""
    return [started(deployment_id),
            ev.DeploymentSwitched(app=APP, at=12.0, deployment_id=deployment_id,
                                  release=f"/releases/{deployment_id}", previous="/releases/d1"),
            ev.HealthCheckFailed(app=APP, at=13.0, deployment_id=deployment_id,
                                 reason="health: GET http://h/ answered 500"),
            ev.RevisionRejected(app=APP, at=13.0, revision=revision, deployment_id=deployment_id,
                                reason="health: GET http://h/ answered 500"),
            ev.DeploymentRolledBack(app=APP, at=13.0, deployment_id=deployment_id,
                                    release="/releases/d1", how="rolled back to release d1"),
            ev.DeploymentFailed(app=APP, at=13.0, deployment_id=deployment_id, reason="bad")]


@pytest.mark.parametrize("trigger", ["poll", "webhook", "push", "manual"])
def test_a_rejected_revision_is_not_deployed_again_by_a_trigger_and_says_why(app, trigger):
    app.request("r1")
    app.record(started("d1"), succeeded("d1"))
    app.request("r2")
    app.record(*rolled_back("d2", "r2"))
    queued = app.request("r2", trigger)
    assert queued.deployment_id is None
    assert "revision r2 was rejected: health: GET http://h/ answered 500" in queued.reason
    assert "sluice sync hello --force" in queued.reason
    assert app.view().rejected == {"r2": "health: GET http://h/ answered 500"}


@pytest.mark.parametrize("how", [{"trigger": "manual", "force": True}, {"trigger": "redeploy"},
                                 {"trigger": "import"}])
def test_an_operator_can_deploy_a_rejected_revision_which_lifts_the_rejection(app, how):
    app.request("r1")
    app.record(started("d1"), succeeded("d1"))
    app.request("r2")
    app.record(*rolled_back("d2", "r2"))
    assert app.request("r2", **how).new
    assert app.view().rejected == {}
    assert app.request("r3").new        # and a newer revision is deployed as ever


def test_a_switched_deployment_is_activating_then_verifying_and_remembers_what_to_put_back(app):
    app.request("r1")
    app.record(started("d1"),
               ev.DeploymentSwitched(app=APP, at=12.0, deployment_id="d1", release="/releases/d1",
                                     previous="/releases/d0"))
    d = app.view().deployments["d1"]
    assert (d.status, d.switched, d.previous, d.rollback) == \
        (DeploymentStatus.ACTIVATING, "/releases/d1", "/releases/d0", None)
    app.record(ev.HealthCheckStarted(app=APP, at=13.0, deployment_id="d1", url="http://h/"))
    assert app.view().deployments["d1"].status == DeploymentStatus.VERIFYING
    assert app.view().deployments["d1"].status.running
    app.record(ev.HealthCheckFailed(app=APP, at=14.0, deployment_id="d1", reason="500"))
    assert app.view().deployments["d1"].rollback == "500"
    app.record(ev.DeploymentRolledBack(app=APP, at=14.0, deployment_id="d1",
                                       release="/releases/d0", how="rolled back"))
    assert app.view().deployments["d1"].rolled_back


def test_a_failed_health_check_kept_live_asks_no_rollback(app):
    app.request("r1")
    app.record(started("d1"), ev.HealthCheckFailed(app=APP, at=14.0, deployment_id="d1",
                                                   reason="500", kept=True))
    assert app.view().deployments["d1"].rollback is None
