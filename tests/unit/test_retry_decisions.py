"""After a failed attempt, on an app's stream in memory: retry with backoff, give up when
no attempts are left, or give way to a newer deployment — as the worker's runner does."""
from __future__ import annotations

import random

import pytest

from orchestrator.config.settings import RetryPolicy
from orchestrator.core import events as ev
from orchestrator.core.decisions import execute, execute_with_outcome
from orchestrator.core.events import EventType
from orchestrator.core.memory_store import MemoryEventStore, MemoryViewCache
from orchestrator.core.projections import Projections
from orchestrator.deploying.retries import AfterFailure, FailedAttempt, decide_after_failure

APP = "hello"
POLICY = RetryPolicy(attempts=3, base=2.0, max=60.0)


@pytest.fixture
def projections() -> Projections:
    projections = Projections(MemoryEventStore(), MemoryViewCache())
    queue(projections, "d1", "r1")
    execute(projections, APP, lambda view: [
        ev.DeploymentStarted(app=APP, at=2.0, deployment_id="d1", worker="w")])
    return projections


def queue(projections: Projections, deployment_id: str, revision: str) -> None:
    execute(projections, APP, lambda view: [ev.DeploymentQueued(
        app=APP, at=1.0, deployment_id=deployment_id, revision=revision, trigger="poll")])


def after_failure(projections: Projections, attempt: int, policy: RetryPolicy | None = POLICY,
                  seed: int = 7) -> tuple[list[ev.Event], AfterFailure]:
    failed = FailedAttempt(APP, "d1", attempt, "503 from the source", at=5.0)
    _, appended, after = execute_with_outcome(
        projections, APP, lambda view: decide_after_failure(view, failed, policy, random.Random(seed)))
    return appended, after


def test_a_failed_attempt_with_attempts_left_is_retried_after_a_backoff(projections):
    appended, after = after_failure(projections, attempt=2)

    assert [e.type for e in appended] == [EventType.DEPLOYMENT_RETRYING]
    retrying = appended[0]
    assert isinstance(retrying, ev.DeploymentRetrying)
    assert (retrying.attempt, retrying.reason) == (2, "503 from the source")
    assert 2.0 <= retrying.retry_in <= 4.0 and after.retry_in == retrying.retry_in
    assert after.describe() == f"retrying in {retrying.retry_in:.1f}s" and not after.hand_over
    d = projections.app(APP).deployments["d1"]
    assert d.status == "pending" and d.message.startswith("attempt 2 failed, retrying in")


def test_the_backoff_is_the_same_for_the_same_random_source(projections):
    first = decide_after_failure(projections.app(APP), FailedAttempt(APP, "d1", 1, "x", 5.0),
                                 POLICY, random.Random(3))
    second = decide_after_failure(projections.app(APP), FailedAttempt(APP, "d1", 1, "x", 5.0),
                                  POLICY, random.Random(3))

    assert first == second and 1.0 <= first[1].retry_in <= 2.0


def test_the_last_attempt_failing_fails_the_deployment_saying_why(projections):
    appended, after = after_failure(projections, attempt=3)

    assert [(e.type, e.reason) for e in appended] == [
        (EventType.DEPLOYMENT_FAILED, "gave up after 3 attempts: 503 from the source")]
    assert after == AfterFailure(EventType.DEPLOYMENT_FAILED) and after.describe() == "DeploymentFailed"
    assert projections.app(APP).deployments["d1"].status == "failed"


def test_an_app_no_longer_configured_fails_at_once(projections):
    appended, after = after_failure(projections, attempt=1, policy=None)

    assert after.verdict == EventType.DEPLOYMENT_FAILED and after.retry_in is None
    assert appended[0].reason == "gave up after 1 attempts: 503 from the source"


def test_a_newer_deployment_waiting_supersedes_the_failed_one_and_is_handed_over(projections):
    queue(projections, "d2", "r2")
    queue(projections, "d3", "r3")

    appended, after = after_failure(projections, attempt=1)

    assert [(e.type, e.by) for e in appended] == [(EventType.DEPLOYMENT_SUPERSEDED, "d3")]
    assert after == AfterFailure(EventType.DEPLOYMENT_SUPERSEDED, hand_over=True)


def test_a_deployment_that_ended_meanwhile_gets_no_further_events(projections):
    execute(projections, APP, lambda view: [
        ev.DeploymentFailed(app=APP, at=4.0, deployment_id="d1", reason="operator")])

    appended, after = after_failure(projections, attempt=1)

    assert appended == [] and after.retry_in is not None
    assert projections.app(APP).deployments["d1"].message == "operator"
