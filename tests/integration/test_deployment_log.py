"""A deployment's log, derived from its events: through `find_log`, `sluice log` and the API."""
from __future__ import annotations

import subprocess
import sys

from fastapi.testclient import TestClient

from orchestrator.api import create_app
from orchestrator.core import keys
from orchestrator.core.projections import AppView
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.observe.deployment_log import find_log
from orchestrator.observe.log_lines import log_lines
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import event_types, sync_and_wait, wait_until_ended
from tests.integration.notifier_thread import notified_app, notifier_running
from tests.integration.recorded import record_deployments
from tests.servers.receiver import Answer, receiver

LOOPBACK = ("127.0.0.1", 50000)      # the API lets loopback clients read without a token
LOCAL = "http://localhost"        # a Host the API answers to (TestClient's own, testserver, is not)


def steps(log) -> list[str]:
    return [line.step for line in log.lines]


def test_a_successful_deployment_logs_each_step_in_order_with_counts_and_timings(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    d = sync_and_wait(services, "hello")

    log = find_log(services, d.id)

    assert (log.app, log.status) == ("hello", "success")
    assert steps(log) == ["queue", "start", "fetch", "snapshot", "validate", "materialise",
                          "switch", "live"]
    by_step = {line.step: line.message for line in log.lines}
    assert by_step["fetch"].startswith("fetched 3 files (0 reused) in ") and "ms" in by_step["fetch"]
    assert by_step["snapshot"].startswith(f"snapshot {d.snapshot[:12]}: 3 files, ")
    assert d.id in by_step["materialise"] and d.id in by_step["live"]
    assert [line.at for line in log.lines] == sorted(line.at for line in log.lines)
    assert all(line.level == "info" for line in log.lines)


def test_an_incremental_deployment_says_how_little_it_fetched_and_what_retention_removed(workspace):
    repo, services = workspace.app_with(FUNCTION_APP, keep_releases=1)
    first = sync_and_wait(services, "hello")
    repo.commit({"extra.txt": "2"})
    sync_and_wait(services, "hello")
    repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v3'\n"})

    third = sync_and_wait(services, "hello")
    log = find_log(services, third.id)

    fetch = next(line.message for line in log.lines if line.step == "fetch")
    assert fetch.startswith("fetched 1 file (0 reused)") and "only what changed" in fetch
    assert steps(log)[-1] == "retention"
    assert log.lines[-1].message == f"removed 1 old release: {first.id}"


def test_a_failed_deployment_log_ends_with_the_reason_naming_the_file_at_fault(workspace):
    _, services = workspace.app_with({**FUNCTION_APP, "HttpHello/function.json": "{not json"})
    d = sync_and_wait(services, "hello")

    log = find_log(services, d.id)

    assert log.status == "failed"
    last = log.lines[-1]
    assert (last.level, last.step) == ("error", "validate")
    assert last.message == d.message and "HttpHello/function.json" in last.message
    assert steps(log) == ["queue", "start", "fetch", "snapshot", "validate"]


def test_retries_are_lines_of_their_own_before_the_final_failure(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    retry = {"attempts": 3, "base": "50ms", "max": "100ms"}
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"), retry=retry)})
    revision = repo.head()
    repo.path.rename(repo.path.with_name("moved"))

    queued = request_deployment(services, "hello", revision, "manual")
    wait_until_ended(services, "hello", queued.deployment_id)
    log = find_log(services, queued.deployment_id)

    assert steps(log) == ["queue", "start", "retry", "start", "retry", "start", "failed"]
    retries = [line for line in log.lines if line.step == "retry"]
    assert all(line.level == "warning" for line in retries)
    assert retries[0].message.startswith("attempt 1 failed: ") and "attempt 2 in " in retries[0].message
    assert log.lines[-1].level == "error" and "gave up after 3 attempts" in log.lines[-1].message


def test_a_deployment_older_than_the_cached_view_is_found_in_its_stream(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    d = sync_and_wait(services, "hello")
    # as if the compact view had forgotten it (it keeps the newest deployments only)
    services.projections.app = lambda name: AppView(name=name)

    log = find_log(services, d.id)

    assert log is not None and steps(log)[-1] == "live"


def test_a_deployment_whose_events_left_redis_is_found_in_the_archive(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"))},
                                   events={"keep_in_redis": 10})
    d = sync_and_wait(services, "hello")
    record_deployments(services, "hello", 20)
    services.projections.app = lambda name: AppView(name=name)      # forgotten by the compact view

    log = find_log(services, d.id)

    in_redis = services.redis.xrange(keys.app_events("hello"))
    assert not any(d.id.encode() in fields[b"data"] for _, fields in in_redis), "its events left Redis"
    assert log is not None and steps(log)[-1] == "live"


def test_sluice_log_prints_one_line_per_step_with_time_step_and_message(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    d = sync_and_wait(services, "hello")

    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config",
                           str(workspace.config_path), "log", d.id],
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 8
    fetch = next(line for line in lines if "  fetch " in line)
    clock, step_and_message = fetch.split("  ", 1)
    assert len(clock) == 12 and clock[2] == clock[5] == ":" and clock[8] == "."
    assert step_and_message.startswith("fetch      fetched 3 files (0 reused) in ")


def test_sluice_log_of_an_unknown_deployment_fails_saying_so(workspace):
    workspace.app_with(FUNCTION_APP)

    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config",
                           str(workspace.config_path), "log", "20200101-000000-abcdef"],
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 1 and "no deployment '20200101-000000-abcdef'" in done.stderr


def test_the_api_serves_the_log_as_json_and_answers_404_for_an_unknown_deployment(workspace):
    _, services = workspace.app_with({**FUNCTION_APP, "host.json": "[1,"})
    d = sync_and_wait(services, "hello")
    client = TestClient(create_app(services), base_url=LOCAL, client=LOOPBACK)

    found = client.get(f"/api/deployments/{d.id}/log")
    unknown = client.get("/api/deployments/20200101-000000-abcdef/log")

    assert found.status_code == 200
    body = found.json()
    assert (body["deployment"], body["app"], body["status"]) == (d.id, "hello", "failed")
    assert set(body["lines"][0]) == {"at", "level", "step", "message"}
    assert body["lines"][-1]["level"] == "error" and "host.json" in body["lines"][-1]["message"]
    assert body["lines"][0]["at"].endswith("Z")
    assert unknown.status_code == 404 and "20200101-000000-abcdef" in unknown.json()["error"]


def test_the_log_is_a_pure_function_of_the_events():
    from orchestrator.core import events as ev
    recorded = [
        ev.DeploymentQueued(app="a", at=1.0, deployment_id="d", revision="r" * 40, trigger="poll"),
        ev.DeploymentStarted(app="a", at=2.0, deployment_id="d", worker="w"),
        ev.SnapshotBuilt(app="a", at=3.0, deployment_id="d", snapshot="s" * 64, files=5,
                         bytes=2048, blobs_added=2, blobs_reused=1, seconds=0.041),
        ev.DeploymentFailed(app="a", at=4.0, deployment_id="d", reason="boom", step="switch",
                            steps={"materialise": 0.25, "validate": 0.5}),
    ]

    lines = log_lines("d", recorded)

    assert [(line.step, line.at) for line in lines] == [
        ("queue", 1.0), ("start", 2.0), ("fetch", 3.0), ("snapshot", 3.0),
        ("validate", 3.75), ("materialise", 4.0), ("switch", 4.0)]
    assert lines[2].message == "fetched 3 files (1 reused) in 41 ms"
    assert "5 files, 2.0 KiB" in lines[3].message
    assert (lines[-1].level, lines[-1].message) == ("error", "boom")


def test_the_steps_after_the_switch_are_lines_of_their_own_with_their_figures():
    from orchestrator.core import events as ev
    release, previous = "/data/releases/a/d", "/data/releases/a/c"
    recorded = [
        ev.DeploymentQueued(app="a", at=1.0, deployment_id="d", revision="r" * 40, trigger="poll"),
        ev.DeploymentSwitched(app="a", at=2.0, deployment_id="d", release=release, previous=previous),
        ev.DeploymentActivated(app="a", at=2.1, deployment_id="d", actions=1, seconds=0.1),
        ev.HealthCheckStarted(app="a", at=2.1, deployment_id="d",
                              url="http://user:s3cret@127.0.0.1:8080/health"),
        ev.HealthCheckPassed(app="a", at=3.0, deployment_id="d", probes=3, failures=0,
                             healthy_after_s=0.4, seconds=0.9, latency_ms={"p50": 2.0, "max": 3.5}),
        ev.DeploymentSucceeded(app="a", at=3.0, deployment_id="d", snapshot="s" * 64, release=release,
                               steps={"switch": 0.01, "activate": 0.1, "verify": 0.9}),
    ]

    lines = log_lines("d", recorded)

    by_step = [(line.step, line.message) for line in lines]
    assert by_step[2] == ("verify", "health check started: http://***@127.0.0.1:8080/health")
    assert by_step[3] == ("verify", "healthy after 400 ms: 3 probes, 0 failed, p50 2 ms, max 3.5 ms; "
                                    "verified in 900 ms")
    assert ("activate", "the activate actions took 100 ms") in by_step
    assert ("verify", "the health check took 900 ms") in by_step
    assert [step for step, _ in by_step[-4:]] == ["switch", "activate", "verify", "live"]


def test_a_resumed_switch_and_a_failed_health_check_say_so_and_the_revision_is_rejected():
    from orchestrator.core import events as ev
    reason = "health: GET http://127.0.0.1:8080/ answered 500 (3 of 3 probes failed)"
    recorded = [
        ev.DeploymentQueued(app="a", at=1.0, deployment_id="d", revision="r" * 40, trigger="poll"),
        ev.DeploymentSwitched(app="a", at=2.0, deployment_id="d", release="/r/d", previous=None,
                              again=True),
        ev.HealthCheckFailed(app="a", at=3.0, deployment_id="d", reason=reason, probes=3, seconds=1.5),
        ev.RevisionRejected(app="a", at=3.0, deployment_id="d", revision="r" * 40, reason=reason),
        ev.DeploymentRolledBack(app="a", at=3.1, deployment_id="d", release=None,
                                how="rolled back: nothing was live before, so the target was removed"),
        ev.DeploymentSucceeded(app="b", at=3.1, deployment_id="other", snapshot="s", release="/r/o"),
    ]

    lines = log_lines("d", recorded)

    assert (lines[1].level, lines[1].message) == (
        "warning", "a worker took the deployment up again: switched to release d again (nothing was "
                   "live before)")
    failed, rejected = lines[2], lines[3]
    assert (failed.level, failed.step) == ("error", "verify")
    assert failed.message == f"health check failed after 3 probes in 1.50 s: {reason} (rolling back)"
    assert (rejected.level, rejected.step) == ("warning", "reject")
    assert rejected.message.startswith(f"revision {'r' * 12} rejected: {reason}")
    assert [line.step for line in lines] == ["queue", "switch", "verify", "reject", "rollback"]


def test_each_notification_of_a_deployment_is_a_line_of_its_log_and_of_no_other(workspace):
    with receiver() as hook:
        hook.answers = [Answer(200), Answer(401, "bad credentials")]     # then 401 for good
        _, services = notified_app(workspace, hook.url, events=["DeploymentStarted", "DeploymentSucceeded"])
        with notifier_running(services):
            first = sync_and_wait(services, "hello")
            wait_for(lambda: "NotificationFailed" in event_types(services, "hello"), what="a refusal")
            second = sync_and_wait(services, "hello")           # the same tree: skipped
            wait_for(lambda: event_types(services, "hello").count("NotificationFailed") == 2,
                     what="the second deployment's start told")

        first_log, second_log = find_log(services, first.id), find_log(services, second.id)
        served = TestClient(create_app(services), base_url=LOCAL, client=LOOPBACK).get(
            f"/api/deployments/{first.id}/log").json()

    told = [(line.level, line.message) for line in first_log.lines if line.step == "notify"]
    assert told == [("info", "webhook: DeploymentStarted delivered (HTTP 200)"),
                    ("warning", "webhook: DeploymentSucceeded not delivered, after 1 try: "
                                "HTTP 401: bad credentials")]
    assert steps(first_log)[-3:] == ["switch", "live", "notify"]
    assert [(line.level, line.message) for line in second_log.lines if line.step == "notify"] == [
        ("warning", "webhook: DeploymentStarted not delivered, after 1 try: HTTP 401: bad credentials")]
    assert [line["message"] for line in served["lines"] if line["step"] == "notify"] == [m for _, m in told]


def test_a_notification_tried_more_than_once_says_how_many_tries_it_took():
    from orchestrator.core import events as ev
    recorded = [
        ev.DeploymentQueued(app="a", at=1.0, deployment_id="d", revision="r" * 40, trigger="poll"),
        ev.DeploymentSucceeded(app="a", at=2.0, deployment_id="d", snapshot="s" * 64, release="/r/d"),
        ev.NotificationDelivered(app="a", at=9.0, delivery="1-0:0", event="DeploymentSucceeded",
                                 channel="slack", attempts=3, status=204, deployment_id="d"),
        ev.NotificationFailed(app="a", at=9.5, delivery="1-0:1", event="DeploymentSucceeded",
                              channel="github", attempts=8, reason="HTTP 502: bad gateway",
                              deployment_id="d"),
        ev.NotificationDelivered(app="a", at=9.0, delivery="2-0:0", event="DeploymentSucceeded",
                                 channel="slack", attempts=1, status=200, deployment_id="other"),
    ]

    lines = [line for line in log_lines("d", recorded) if line.step == "notify"]

    assert [(line.at, line.level, line.message) for line in lines] == [
        (9.0, "info", "slack: DeploymentSucceeded delivered after 3 tries (HTTP 204)"),
        (9.5, "warning", "github: DeploymentSucceeded not delivered, after 8 tries: HTTP 502: bad gateway")]
