"""Secrets the config takes from the environment (`${TEST_TOKEN}`, in the session worker's
environment: tests/conftest.py) are sent where the config says, and shown nowhere: not in
the app's events as Redis holds them, not in `sluice log`, not in the worker's log lines."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest

from orchestrator.core import events as ev
from orchestrator.core import keys
from tests.integration.flow import sync_and_wait

TOKEN = os.environ["TEST_TOKEN"]


class Failing(http.server.BaseHTTPRequestHandler):
    """A reload endpoint that answers 500, remembering what it was sent."""
    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:      # noqa: N802 (http.server's name)
        Failing.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Failing.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def raw_stream(services, key: str) -> bytes:
    return b"\n".join(value for _, entry in services.redis.xrange(key) for value in entry.values())


def test_a_secret_an_app_sends_and_its_build_echoes_shows_as_its_name_wherever_the_deployment_is_told(
        workspace, failing_endpoint, worker_log):
    _, services = workspace.app_with({"index.html": "v1"}, name="masked", layout="site", build={
        "command": 'echo "deploying with $API_TOKEN"', "env": {"API_TOKEN": "${TEST_TOKEN}"}},
        activate=[{"http": {"url": failing_endpoint + "/hooks/${TEST_TOKEN}",
                            "headers": {"Authorization": "Bearer ${TEST_TOKEN}"}}}],
        on_failure="rollback")

    d = sync_and_wait(services, "masked")

    assert Failing.seen == [(f"/hooks/{TOKEN}", f"Bearer {TOKEN}")]     # sent as configured
    assert d.status == "failed" and "/hooks/${TEST_TOKEN}): answered 500" in d.message, d.message
    events = raw_stream(services, keys.app_events("masked"))
    assert TOKEN.encode() not in events and b"${TEST_TOKEN}" in events
    assert TOKEN.encode() not in raw_stream(services, keys.FEED)
    output = [r.event for r in services.store.read("masked") if isinstance(r.event, ev.BuildOutput)]
    assert "deploying with ${TEST_TOKEN}" in [line for e in output for line in e.lines]
    shown = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(workspace.config_path),
                            "log", d.id], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert TOKEN not in shown.stdout and "/hooks/${TEST_TOKEN}" in shown.stdout
    logged = worker_log.read_text()
    assert TOKEN not in logged and f"{d.id}: DeploymentFailed: activate action 1 (POST " in logged
