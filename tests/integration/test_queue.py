"""Queue inspection (`sluice queue`, GET /api/queue): real Redis, the real Celery producer and
worker, real git repositories."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from orchestrator.api import create_app
from orchestrator.core import events as ev
from orchestrator.core.clock import FakeClock
from orchestrator.core.decisions import execute
from orchestrator.core.lease import Lease
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.deploying.task_queue import DEPLOY_TASK, QUEUED_AT, celery_for
from orchestrator.observe.formatting import queue_tables
from orchestrator.observe.queue_view import POLL_GRACE, inspect_queue
from orchestrator.runtime.services import Services
from orchestrator.triggers.poller import Poller
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import event_types, sync_and_wait
from tests.integration.notifier_thread import notified_app, notifier_running
from tests.servers.receiver import Answer, receiver

V2 = {"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"}


@pytest.fixture
def unserved(workspace):
    """The app `hello` on database 1 of the session's Redis, where no worker listens: what
    is sent to the `deploy` queue stays there. Emptied before and after."""
    repo, services = workspace.app_with(FUNCTION_APP)
    url = workspace.redis_url.rsplit("/", 1)[0] + "/1"
    other = Services.build(services.config.model_copy(update={"redis_url": url}))
    other.redis.flushdb()
    yield repo, other
    other.redis.flushdb()


def queue_named(report: dict, name: str) -> dict:
    return next(q for q in report["queues"] if q["name"] == name)


def test_a_queued_deployment_waits_in_the_deploy_queue_with_the_age_of_its_message(unserved):
    repo, services = unserved
    queued = request_deployment(services, "hello", repo.head(), "manual")
    time.sleep(0.3)

    report = inspect_queue(services)

    deploy = queue_named(report, "deploy")
    assert deploy["waiting"] == 1 and 0.3 <= deploy["oldest_age"] < 10
    assert report["in_flight"] == [] and report["retries"] == []
    assert services.projections.app("hello").waiting()[0].id == queued.deployment_id


def test_every_queue_the_broker_knows_is_listed_and_foreign_messages_count_without_an_age(unserved):
    _, services = unserved
    celery = celery_for(services.redis_url)
    name = f"other-{uuid.uuid4().hex[:6]}"
    celery.send_task(DEPLOY_TASK, args=["hello", "x", 1], queue=name,
                     headers={QUEUED_AT: time.time() - 42})
    celery.send_task("someone.elses.task", args=[], queue=name)   # sent without our header

    report = inspect_queue(services)

    assert [q["name"] for q in report["queues"]][:1] == ["deploy"]
    assert queue_named(report, name)["waiting"] == 2
    assert 42 <= queue_named(report, name)["oldest_age"] < 60
    assert not any("pidbox" in q["name"] for q in report["queues"])


def test_a_running_deployment_is_in_flight_with_the_holder_of_the_apps_lease(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    started_at = time.time() - 5
    # what a worker does when it starts a deployment: hold the app's lease, record the start
    with Lease(services.redis, "hello", "worker-host:4242", ttl=30):
        execute(services.projections, "hello", lambda view: [
            ev.DeploymentQueued(app="hello", at=started_at, deployment_id="d-1",
                                revision=repo.head(), trigger="manual"),
            ev.DeploymentStarted(app="hello", at=started_at, deployment_id="d-1",
                                 worker="worker-host:4242")])

        report = inspect_queue(services)

    [running] = report["in_flight"]
    assert (running["app"], running["deployment_id"], running["worker"]) == (
        "hello", "d-1", "worker-host:4242")
    assert 5 <= running["running_for"] < 15


def test_a_deployment_in_flight_shows_its_status_verifying_once_its_health_is_probed(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    at = time.time()
    with Lease(services.redis, "hello", "worker-host:4242", ttl=30):
        execute(services.projections, "hello", lambda view: [
            ev.DeploymentQueued(app="hello", at=at, deployment_id="d-1", revision=repo.head(),
                                trigger="manual"),
            ev.DeploymentStarted(app="hello", at=at, deployment_id="d-1", worker="worker-host:4242"),
            ev.DeploymentSwitched(app="hello", at=at, deployment_id="d-1", release="/r/d-1",
                                  previous=None)])
        switched = inspect_queue(services)["in_flight"]
        execute(services.projections, "hello", lambda view: [
            ev.HealthCheckStarted(app="hello", at=at, deployment_id="d-1", url="http://127.0.0.1:9/")])
        verifying = inspect_queue(services)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(queue_tables(verifying))

    assert [(t["deployment_id"], t["status"]) for t in switched] == [("d-1", "activating")]
    assert [(t["deployment_id"], t["status"]) for t in verifying["in_flight"]] == [("d-1", "verifying")]
    assert re.search(r"│ d-1 +│ verifying +│ worker-host:4242 ", console.export_text())


def test_a_transient_failure_shows_the_next_attempt_its_number_and_when_it_is_due(workspace):
    retry = {"attempts": 4, "base": "40s", "max": "60s"}
    repo, services = workspace.app_with(FUNCTION_APP, retry=retry)
    sync_and_wait(services, "hello")
    revision = repo.commit(V2)
    repo.path.rename(repo.path.with_name("away"))       # the source is unreachable

    queued = request_deployment(services, "hello", revision, "manual")
    wait_for(lambda: "DeploymentRetrying" in event_types(services, "hello"), what="a retry")
    report = inspect_queue(services)

    [due] = report["retries"]
    assert (due["app"], due["deployment_id"], due["attempt"], due["of"]) == (
        "hello", queued.deployment_id, 2, 4)
    retrying = [r.event for r in services.store.read("hello") if r.event.type == "DeploymentRetrying"][0]
    assert 0 < due["due_in"] <= retrying.retry_in <= 40
    assert report["in_flight"] == []


def test_polls_due_within_a_minute_and_overdue_ones_are_told_apart(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({
        "soon": git_app(repo, workspace.target("soon")),
        "late": git_app(repo, workspace.target("late")),
        "later": git_app(repo, workspace.target("later"), poll_interval="5m")})
    clock = FakeClock(time.time())
    poller = Poller(Services.build(services.config, clock))
    poller.register()                       # every polled app due now
    clock.advance(1000)
    poller._schedule("soon", 20)            # as after a head check: next one in 20 s
    poller._schedule("later", 300)

    report = inspect_queue(services, now=clock.now())

    assert report["polls"]["due_next_minute"] == [{"app": "soon", "due_in": 20.0}]
    assert report["polls"]["overdue"] == [{"app": "late", "late_by": 1000.0}]
    just_due = inspect_queue(services, now=clock.now() + 20 + POLL_GRACE / 2)["polls"]
    assert just_due["due_next_minute"][0] == {"app": "soon", "due_in": 0.0}


def test_sluice_queue_prints_tables_and_json_and_keeps_printing_with_watch(unserved, workspace):
    repo, services = unserved
    request_deployment(services, "hello", repo.head(), "manual")
    env = {**os.environ, "SLUICE_REDIS_URL": services.redis_url}
    command = [sys.executable, "-m", "orchestrator.cli", "--config", str(workspace.config_path), "queue"]

    table = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    doc = json.loads(subprocess.run(command + ["--json"], capture_output=True, text=True,
                                    env=env, timeout=60).stdout)
    watching = subprocess.Popen(command + ["--json", "--watch"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [json.loads(watching.stdout.readline()) for _ in range(2)]
    finally:
        watching.terminate()
        watching.wait(10)

    assert table.returncode == 0 and "deploy" in table.stdout and "in flight: none" in table.stdout
    assert queue_named(doc, "deploy")["waiting"] == 1
    assert set(doc) == {"queues", "in_flight", "retries", "polls", "notifications", "at"}
    assert lines[0]["at"] < lines[1]["at"]



def test_a_delivery_failing_shows_its_tries_error_and_next_try_and_its_entry_stays_pending(workspace):
    with receiver() as hook:
        hook.answers = [Answer(503, "down for maintenance")]
        _, services = notified_app(workspace, hook.url, api={"reads": "open"})
        with notifier_running(services):
            deployment = sync_and_wait(services, "hello")
            hook.wait_until(1)
            report = wait_for(lambda: (r := inspect_queue(services))["notifications"]["failing"] and r,
                              what="the failing delivery in the queue")
            console = Console(width=200, record=True, file=io.StringIO())
            console.print(queue_tables(report))
            served = TestClient(create_app(services), base_url="http://localhost").get("/api/queue").json()

    [failing] = report["notifications"]["failing"]
    assert report["notifications"]["pending"] == 1
    assert (failing["app"], failing["channel"], failing["event"], failing["attempts"]) == (
        "hello", "webhook", "DeploymentSucceeded", 1)
    assert failing["error"] == "HTTP 503: down for maintenance" and 50 < failing["next_in"] <= 60
    assert failing["delivery"] == hook.received[0].delivery
    assert served["notifications"]["pending"] == 1
    [served_failing] = served["notifications"]["failing"]
    assert {**served_failing, "next_in": failing["next_in"]} == failing
    assert services.projections.app("hello").deployments[deployment.id].status == "success"
    text = console.export_text()
    assert "notifications: 1 pending" in text
    assert re.search(r"│ hello +│ webhook +│ DeploymentSucceeded +│ 1 +│ in [\d.]+ ?s .*│ HTTP 503: down for "
                     r"maintenance", text), text


def test_with_no_notifier_ever_run_nothing_is_pending_or_failing(workspace):
    _, services = workspace.app_with(FUNCTION_APP)

    assert inspect_queue(services)["notifications"] == {"pending": 0, "failing": []}
