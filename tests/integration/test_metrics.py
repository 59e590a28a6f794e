"""GET /metrics: figures computed from Redis at each scrape, whichever process made them."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.api import create_app
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute
from orchestrator.core.lease import Lease
from orchestrator.observe import metrics_text
from orchestrator.observe.app_figures import app_state_key
from orchestrator.observe.metrics import SCRAPED_FORMATS, exposition, queue_depth, stamps
from orchestrator.triggers.poller import Poller
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import event_types, sync_and_wait
from tests.integration.notifier_thread import notified_app, notifier_running
from tests.servers.receiver import Answer, receiver

LOOPBACK = ("127.0.0.1", 50000)
LOCAL = "http://localhost"        # a Host the API answers to (TestClient's own, testserver, is not)


def scrape(services) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    text = exposition(services)[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(figures: dict, name: str, **labels) -> float:
    return figures[(name, tuple(sorted(labels.items())))]


def test_ended_deployments_are_counted_by_app_and_status_and_timed(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    sync_and_wait(services, "hello")                              # the same tree: skipped
    repo.commit({"host.json": "{broken"})
    sync_and_wait(services, "hello")                              # invalid: failed

    figures = scrape(services)

    for status, count in (("success", 1), ("skipped", 1), ("failed", 1), ("superseded", 0)):
        assert sample(figures, "sluice_deployments_total", app="hello", status=status) == count
    for status in ("success", "skipped", "failed"):
        assert sample(figures, "sluice_deployment_duration_seconds_count", app="hello", status=status) == 1
        assert sample(figures, "sluice_deployment_duration_seconds_bucket", app="hello",
                      status=status, le="+Inf") == 1
    assert sample(figures, "sluice_deployments_in_progress", app="hello", status="building") == 0
    assert sample(figures, "sluice_app_paused", app="hello") == 0


def test_change_to_live_is_the_time_from_change_detected_to_success(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    events = {r.event.type: r.event for r in services.store.read("hello")}

    figures = scrape(services)

    assert sample(figures, "sluice_change_to_live_seconds_count", app="hello") == 1
    assert sample(figures, "sluice_change_to_live_seconds_sum", app="hello") == pytest.approx(
        events["DeploymentSucceeded"].at - events["ChangeDetected"].at)


def test_the_figures_are_not_counted_twice_and_survive_losing_their_cache(workspace, clean_redis):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    first = scrape(services)
    repo.commit({"extra.txt": "x"})
    sync_and_wait(services, "hello")
    second = scrape(services)

    clean_redis.delete(app_state_key("hello"))

    assert sample(first, "sluice_deployments_total", app="hello", status="success") == 1
    assert sample(second, "sluice_deployments_total", app="hello", status="success") == 2
    assert scrape(services) == scrape(services) == second


def test_the_worker_keeps_a_deployed_apps_text_in_each_scraped_format_so_a_first_scrape_folds_none_of_its_history(
        workspace, clean_redis):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    repo.commit({"extra.txt": "x"})
    sync_and_wait(services, "hello")
    versions = services.store.versions(["hello"])

    kept = {fmt: metrics_text.kept(clean_redis, fmt, stamps(services, versions)) for fmt in SCRAPED_FORMATS}

    assert set(SCRAPED_FORMATS) == {"text/plain", "application/openmetrics-text"}
    assert all("hello" in texts for texts in kept.values()), "kept at the stream's version, before any scrape"
    first = scrape(services)
    for pattern in (app_state_key("*"), keys.metrics_text("*", "*")):     # figures and texts
        for key in clean_redis.scan_iter(pattern):
            clean_redis.delete(key)
    assert scrape(services) == first            # the same figures as a scrape folding everything
    assert sample(first, "sluice_deployments_total", app="hello", status="success") == 2


def test_switched_deployments_show_as_activating_or_verifying_and_rollbacks_are_counted(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    revision, at = repo.commit({"extra.txt": "x"}), time.time()

    def switched(d: str) -> list[ev.Event]:
        return [ev.DeploymentQueued(app="hello", at=at, deployment_id=d, revision=revision,
                                    trigger="manual"),
                ev.DeploymentStarted(app="hello", at=at, deployment_id=d, worker="w"),
                ev.DeploymentSwitched(app="hello", at=at, deployment_id=d, release=f"/r/{d}",
                                      previous=None)]
    # what workers record after their switches (the lease held: no reaper takes them for lost)
    with Lease(services.redis, "hello", "w", ttl=30):
        execute(services.projections, "hello", lambda view: [
            *switched("d-1"),
            *switched("d-2"),
            ev.HealthCheckStarted(app="hello", at=at, deployment_id="d-2", url="http://127.0.0.1:9/"),
            *switched("d-3"),
            ev.RevisionRejected(app="hello", at=at, deployment_id="d-3", revision=revision,
                                reason="health: GET http://127.0.0.1:9/ answered 500"),
            ev.DeploymentRolledBack(app="hello", at=at, deployment_id="d-3", release=None,
                                    how="rolled back")])

        figures = scrape(services)

    assert sample(figures, "sluice_deployments_in_progress", app="hello", status="activating") == 2
    assert sample(figures, "sluice_deployments_in_progress", app="hello", status="verifying") == 1
    assert sample(figures, "sluice_rollbacks_total", app="hello") == 1
    assert sample(figures, "sluice_app_rejected_revisions", app="hello") == 1


def test_head_checks_are_timed_and_failures_counted_by_source_type(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({
        "hello": git_app(repo, workspace.target("hello")),
        "gone": {"target": str(workspace.target("gone")),
                 "source": {"type": "git", "url": str(workspace.root / "missing")}}})
    poller = Poller(services)
    poller.register()

    results = poller.tick()
    figures = scrape(services)

    assert sorted(r.app for r in results if r.error) == ["gone"]
    assert sample(figures, "sluice_head_checks_total", source_type="git") == 2
    assert sample(figures, "sluice_poll_errors_total", source_type="git") == 1
    assert sample(figures, "sluice_head_check_duration_seconds_count", source_type="git") == 2
    assert sample(figures, "sluice_head_check_duration_seconds_bucket", source_type="git", le="+Inf") == 2
    assert sample(figures, "sluice_head_check_duration_seconds_sum", source_type="git") > 0


def test_queue_depth_counts_every_priority_list_of_the_queue(clean_redis):
    clean_redis.lpush("sluice-test-queue", b"a", b"b")
    clean_redis.lpush("sluice-test-queue\x06\x166", b"c")
    try:
        assert queue_depth(clean_redis, "sluice-test-queue") == 3
    finally:
        clean_redis.delete("sluice-test-queue", "sluice-test-queue\x06\x166")


def test_the_api_serves_the_figures_in_prometheus_text_format(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")

    client = TestClient(create_app(services), base_url=LOCAL, client=LOOPBACK)
    response = client.get("/metrics")
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"sluice_deployments", "sluice_deployment_duration_seconds", "sluice_change_to_live_seconds",
            "sluice_queue_depth", "sluice_poll_errors", "sluice_head_check_duration_seconds"} <= names
    assert 'sluice_queue_depth{queue="deploy"}' in response.text


def test_notifications_are_counted_by_channel_and_result_and_those_pending_and_failing_now_shown(workspace):
    with receiver() as hook:
        hook.answers = [Answer(200), Answer(401, "bad credentials"), Answer(503, "down")]
        _, services = notified_app(workspace, hook.url, events=["DeploymentSucceeded", "DeploymentSkipped"])
        with notifier_running(services):
            sync_and_wait(services, "hello")
            wait_for(lambda: "NotificationDelivered" in event_types(services, "hello"), what="delivered")
            sync_and_wait(services, "hello")                  # the same tree: skipped
            wait_for(lambda: "NotificationFailed" in event_types(services, "hello"), what="refused")
            sync_and_wait(services, "hello")
            wait_for(lambda: services.redis.hlen(keys.NOTIFY_FAILING), what="a delivery failing")

            figures = scrape(services)

    assert sample(figures, "sluice_notifications_total", app="hello", channel="webhook", result="delivered") == 1
    assert sample(figures, "sluice_notifications_total", app="hello", channel="webhook", result="failed") == 1
    assert sample(figures, "sluice_notifications_pending") == 1
    assert sample(figures, "sluice_notifications_failing") == 1
