"""The `health` probe (issue 15) against a real HTTP server whose answers each test scripts,
with time from a fake clock that moves when the probe waits for its next turn."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.config.steps import HealthConfig
from orchestrator.core import placeholders
from orchestrator.core.clock import FakeClock
from orchestrator.core.errors import HealthCheckFailed
from orchestrator.deploying.before_switch import Candidate, variables
from orchestrator.deploying.health import HealthReport, Probe, verify_health
from tests.servers.scripted_http import ScriptedHttp, scripted_http

CANDIDATE = Candidate(app="web", deployment_id="d-1", revision="abc123", release=Path("/srv/releases/r2"),
                      previous=Path("/srv/releases/r1"), target=Path("/srv/web"))
OK, BROKEN = (200, "ok"), (500, "oops")


@pytest.fixture
def server() -> Iterator[ScriptedHttp]:
    with scripted_http() as scripted:
        yield scripted


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def verify(url: str, clock: FakeClock, probes: list[Probe] | None = None, started: float | None = None,
           **settings) -> HealthReport:
    with httpx.Client() as client:
        return verify_health(HealthConfig(url=url, **settings), variables(CANDIDATE), clock=clock, client=client,
                             on_probe=(probes if probes is not None else []).append, started=started)


def failure(url: str, clock: FakeClock, **settings) -> str:
    with pytest.raises(HealthCheckFailed) as caught:
        verify(url, clock, **settings)
    return str(caught.value)


def test_a_release_answering_at_once_is_healthy_after_one_probe(server, clock):
    report = verify(server.url + "/health", clock)

    assert (report.probes, report.failures, report.healthy_after_s, report.seconds) == (1, 0, 0, 0)
    assert report.latency_ms.keys() == {"p50", "max"}


def test_a_release_failing_at_first_is_healthy_once_it_answers_within_the_deadline(server, clock):
    server.answers = [(503, "starting"), (503, "starting"), OK]
    probes: list[Probe] = []

    report = verify(server.url + "/health", clock, probes, deadline="10s")

    assert (report.probes, report.failures, report.healthy_after_s) == (3, 2, 2.0)
    assert [(p.ok, p.status, p.detail) for p in probes] == [
        (False, 503, "answered 503"), (False, 503, "answered 503"), (True, 200, "answered 200")]


def test_a_release_never_healthy_fails_at_the_deadline_naming_the_status_and_the_counts(server, clock):
    server.answers = [BROKEN]

    reason = failure(server.url + "/health", clock, deadline="3s", interval="1s")

    assert reason == (f"health: GET {server.url}/health answered 500 "
                      "(4 of 4 probes failed; not healthy within the 3 s deadline)")
    assert clock.monotonic() == 1003


def test_healthy_after_needs_that_many_good_answers_in_a_row(server, clock):
    server.answers = [OK, OK, BROKEN, OK, OK, OK]

    report = verify(server.url, clock, healthy_after=3)

    assert (report.probes, report.failures, report.healthy_after_s) == (6, 1, 5.0)


def test_good_answers_too_few_in_a_row_by_the_deadline_are_not_healthy(server, clock):
    server.answers = [BROKEN, OK]

    reason = failure(server.url, clock, healthy_after=3, deadline="2s")

    assert reason.endswith("answered 200 but only 2 times in a row of the 3 needed "
                           "(1 of 3 probes failed; not healthy within the 2 s deadline)")


def test_body_contains_fills_in_the_revision_so_the_old_code_answering_is_not_healthy(server, clock):
    server.answers = [(200, "version 0f0f0f"), (200, "version abc123")]
    probes: list[Probe] = []

    verify(server.url, clock, probes, body_contains="version {revision}")

    assert [(p.ok, p.detail) for p in probes] == [(False, "body lacks 'version abc123'"), (True, "answered 200")]
    server.answers = [(200, "version 0f0f0f")]
    assert "body lacks 'version abc123' (3 of 3 probes failed" in failure(
        server.url, clock, body_contains="version {revision}", deadline="2s")


def test_the_url_and_headers_are_sent_with_their_placeholders_filled(server, clock):
    verify(server.url + "/health?app={app}&rev={revision}", clock, headers={"X-Release": "{release}"})

    assert server.seen[0]["path"] == "/health?app=web&rev=abc123"
    assert server.seen[0]["X-Release"] == "/srv/releases/r2"


def test_statuses_expected_are_the_only_good_ones(server, clock):
    server.answers = [(204, ""), (200, "ok")]

    report = verify(server.url, clock, expect=[200])

    assert (report.probes, report.failures) == (2, 1)


def test_a_healthy_release_is_probed_for_stable_for_and_then_verified(server, clock):
    report = verify(server.url, clock, stable_for="10s", interval="2s")

    assert (report.probes, report.failures, report.healthy_after_s, report.seconds) == (6, 0, 0, 10)


def test_one_failure_within_stable_for_is_unhealthy_with_the_stable_reason(server, clock):
    server.answers = [OK, OK, OK, BROKEN, OK]

    reason = failure(server.url + "/health", clock, stable_for="10s")

    assert reason == (f"health: GET {server.url}/health answered 500 at 3 s of stable_for 10 s "
                      "(after 3 healthy probes)")
    assert len(server.seen) == 4


def test_a_refused_connection_is_a_failed_probe_that_says_so(clock):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/health"
    probes: list[Probe] = []

    with pytest.raises(HealthCheckFailed) as caught:
        verify(closed, clock, probes, deadline="1s")

    assert [(p.ok, p.status) for p in probes] == [(False, None)] * 2
    assert probes[0].detail.startswith("ConnectError: ")
    assert str(caught.value).startswith(f"health: GET {closed} ConnectError: ")


def test_a_probe_slower_than_its_timeout_fails_as_timed_out(server, clock):
    server.delay = 1.0
    probes: list[Probe] = []

    with pytest.raises(HealthCheckFailed, match=r"timed out after 0\.2 s \(1 of 1 probes failed"):
        verify(server.url, clock, probes, timeout="200ms", deadline="500ms")

    assert probes[0].detail == "timed out after 0.2 s"


def test_a_deadline_that_began_earlier_leaves_less_time(server, clock):
    server.answers = [BROKEN]

    with pytest.raises(HealthCheckFailed, match=r"\(3 of 3 probes failed; not healthy within the 10 s"):
        verify(server.url, clock, started=clock.monotonic() - 8, deadline="10s")


def test_a_verification_resumed_past_its_deadline_still_probes_once(server, clock):
    report = verify(server.url, clock, started=clock.monotonic() - 100, deadline="10s")

    assert (report.probes, report.healthy_after_s) == (1, 100)


def test_the_reason_shows_no_credentials_of_the_url(server, clock):
    server.answers = [BROKEN]
    url = server.url.replace("http://", "http://probe:s3cret@")

    assert "s3cret" not in failure(url, clock, deadline="1s")


def test_every_placeholder_the_config_accepts_is_one_a_release_fills():
    assert set(placeholders.NAMES) == variables(CANDIDATE).keys()
