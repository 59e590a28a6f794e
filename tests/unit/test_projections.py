from orchestrator.core import events as ev
from orchestrator.core.event_log import RecordedEvent
from orchestrator.core.projections import AppView, replay


def recorded(*events):
    return [RecordedEvent(n, f"{n}-0", e) for n, e in enumerate(events, start=1)]


def queued(dep, revision="r1", at=1.0):
    return [ev.ChangeDetected(app="a", at=at, revision=revision, trigger="poll"),
            ev.DeploymentQueued(app="a", at=at, deployment_id=dep, revision=revision, trigger="poll")]


def test_a_successful_deployment_becomes_the_active_one():
    view = replay("a", recorded(
        *queued("d1"),
        ev.DeploymentStarted(app="a", at=2.0, deployment_id="d1", worker="w"),
        ev.SnapshotBuilt(app="a", at=3.0, deployment_id="d1", snapshot="s1", files=3, bytes=9,
                         blobs_added=3, blobs_reused=0),
        ev.DeploymentSucceeded(app="a", at=4.0, deployment_id="d1", snapshot="s1", release="/r/d1")))

    d = view.active
    assert (d.id, d.status, d.snapshot, d.release, d.started_at, d.ended_at) == (
        "d1", "success", "s1", "/r/d1", 2.0, 4.0)
    assert view.version == 5 and view.last_revision == "r1"


def test_failed_and_skipped_deployments_do_not_change_the_active_one():
    view = replay("a", recorded(
        *queued("d1"),
        ev.DeploymentSucceeded(app="a", at=2.0, deployment_id="d1", snapshot="s1", release="/r"),
        *queued("d2", "r2", 3.0),
        ev.DeploymentFailed(app="a", at=4.0, deployment_id="d2", reason="host.json is missing"),
        *queued("d3", "r1", 5.0),
        ev.DeploymentSkipped(app="a", at=6.0, deployment_id="d3", snapshot="s1", reason="same")))

    assert view.active_deployment == "d1"
    assert [(d.id, d.status) for d in view.history()] == [
        ("d3", "skipped"), ("d2", "failed"), ("d1", "success")]
    assert view.deployments["d2"].message == "host.json is missing"


def test_a_retry_puts_the_deployment_back_to_pending_and_says_why():
    view = replay("a", recorded(
        *queued("d1"),
        ev.DeploymentStarted(app="a", at=2.0, deployment_id="d1", worker="w", attempt=1),
        ev.DeploymentRetrying(app="a", at=3.0, deployment_id="d1", attempt=1,
                              reason="git fetch failed", retry_in=2.0),
        ev.DeploymentStarted(app="a", at=5.0, deployment_id="d1", worker="w", attempt=2)))

    d = view.deployments["d1"]
    assert (d.status, d.attempts, d.started_at) == ("building", 2, 2.0)
    assert "retrying in 2.0s: git fetch failed" in d.message


def test_the_view_survives_a_round_trip_through_its_cache_form_in_order():
    events = []
    for n in (3, 1, 2):
        events += queued(f"d{n}", f"r{n}", float(n))
    view = replay("a", recorded(*events))

    again = AppView.from_json(view.to_json())

    assert again == view and [d.id for d in again.history()] == ["d2", "d1", "d3"]


def test_events_from_a_newer_sluice_are_skipped_not_fatal():
    unknown = ev.Event.from_fields({"type": "SomethingNew", "schema": "9", "data": "{}"})
    view = replay("a", recorded(*queued("d1"), unknown))
    assert view.version == 3 and view.deployments["d1"].status == "pending"


def test_events_round_trip_through_their_stream_fields():
    event = ev.SnapshotBuilt(app="a", at=1.5, deployment_id="d", snapshot="s", files=1,
                             bytes=2, blobs_added=1, blobs_reused=0)
    assert ev.Event.from_fields(event.to_fields()) == event


def test_the_cached_view_keeps_what_the_engine_needs_and_a_window_of_recent_history():
    from orchestrator.core.projections import RECENT
    events = []
    for n in range(RECENT + 30):
        events += queued(f"d{n}", f"r{n}", float(n))
        status = ev.DeploymentSucceeded(app="a", at=n + 0.5, deployment_id=f"d{n}", snapshot=f"s{n}",
                                        release=f"/r/d{n}") if n % 2 == 0 else \
            ev.DeploymentFailed(app="a", at=n + 0.5, deployment_id=f"d{n}", reason="x")
        events.append(status)
        if n % 2 == 0 and n >= 4:      # the runner keeps two releases besides the live one
            events.append(ev.ReleasesPruned(app="a", at=n + 0.6, releases=[f"/r/d{n - 6}"]))
    events += queued("waiting", "rw", 999.0)
    records = recorded(*events)

    view = replay("a", records)
    full = replay("a", records, compact=False)

    assert len(full.deployments) == RECENT + 31
    assert len(view.deployments) <= RECENT + 4
    assert "waiting" in view.deployments and view.active_deployment == f"d{RECENT + 28}"
    assert [d.id for d in view.history()] == [d.id for d in full.history()][:len(view.deployments)]


def test_deployments_whose_release_is_kept_stay_in_the_view_however_old():
    events = [*queued("old"), ev.DeploymentSucceeded(app="a", at=1.0, deployment_id="old",
                                                    snapshot="s", release="/r/old")]
    for n in range(80):
        events += [*queued(f"f{n}", f"r{n}", 2.0 + n),
                   ev.DeploymentFailed(app="a", at=2.5 + n, deployment_id=f"f{n}", reason="x")]
    view = replay("a", recorded(*events))
    assert "old" in view.deployments and view.kept_releases() == ["/r/old"]
