"""`activate` (issue 15): what tells the host a new release is live, after the switch, with
the session's real worker: commands, signals and HTTP calls given the release; a failing
action keeps the release live or rolls back (`on_failure`)."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest

from orchestrator.core import events as ev
from tests.helpers import wait_for
from tests.integration.flow import sync_and_wait, tree

RECORD = ('echo "$SLUICE_APP $SLUICE_REVISION $(readlink "$SLUICE_TARGET") $SLUICE_RELEASE '
          '$SLUICE_PREVIOUS_RELEASE" >> {log}')


def events_of(services, app: str, deployment_id: str) -> list[ev.Event]:
    return [r.event for r in services.store.read(app) if getattr(r.event, "deployment_id", None) == deployment_id]


def test_a_command_runs_after_the_switch_knowing_the_release_and_what_it_replaced(workspace, tmp_path):
    log = tmp_path / "activations"
    repo, services = workspace.app_with({"index.html": "v1"}, name="act", layout="site",
                                        activate=[{"command": RECORD.format(log=log)}])
    first = sync_and_wait(services, "act")
    repo.commit({"index.html": "v2"})

    second = sync_and_wait(services, "act")

    assert first.status == second.status == "success", second.message
    lines = [line.split() for line in log.read_text().splitlines()]
    app, revision, target_then, release, previous = lines[1]
    assert (app, revision) == ("act", repo.head())
    assert target_then == release == second.release and previous == first.release
    assert [e.type for e in events_of(services, "act", second.id)][-2:] == [
        "DeploymentActivated", "DeploymentSucceeded"]


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]] = []
    status = 204

    def do_POST(self) -> None:      # noqa: N802 (http.server's name)
        Recorder.seen.append((self.command, self.path, self.headers.get("X-Release")))
        self.send_response(Recorder.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def reload_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.seen, Recorder.status = [], 204
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_http_call_gets_the_placeholders_filled(workspace, reload_endpoint):
    repo, services = workspace.app_with({"index.html": "v1"}, name="hook", layout="site", activate=[
        {"http": {"url": reload_endpoint + "/reload?app={app}&rev={revision}",
                  "headers": {"X-Release": "{release}"}}}])

    d = sync_and_wait(services, "hook")

    assert d.status == "success", d.message
    assert Recorder.seen == [("POST", f"/reload?app=hook&rev={repo.head()}", d.release)]


def test_a_signal_reaches_the_process_its_pidfile_names(workspace, tmp_path):
    got, ready = tmp_path / "got-hup", tmp_path / "ready"
    host = subprocess.Popen([sys.executable, "-c", (
        "import signal, time, pathlib\n"
        f"signal.signal(signal.SIGHUP, lambda *a: pathlib.Path({str(got)!r}).write_text('hup'))\n"
        f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
        "time.sleep(120)\n")])
    pidfile = tmp_path / "host.pid"
    pidfile.write_text(f"{host.pid}\n")
    try:
        # a SIGHUP before the host's handler is in place ends it (CI: a loaded machine)
        wait_for(ready.exists, timeout=30, what="the host to handle SIGHUP")
        repo, services = workspace.app_with({"index.html": "v1"}, name="sig", layout="site",
                                            activate=[{"signal": {"pidfile": str(pidfile), "signal": "HUP"}}])
        d = sync_and_wait(services, "sig")
        assert d.status == "success", d.message
        wait_for(lambda: got.exists(), timeout=10, what="the host to get SIGHUP")
    finally:
        host.kill()
        host.wait()


def test_a_failing_action_with_keep_leaves_the_new_release_live_and_says_so(workspace, reload_endpoint):
    Recorder.status = 500
    repo, services = workspace.app_with({"index.html": "v1"}, name="kept", layout="site",
                                        activate=[{"http": {"url": reload_endpoint + "/reload"}}])

    d = sync_and_wait(services, "kept")

    assert d.status == "success"
    failed = [e for e in events_of(services, "kept", d.id) if isinstance(e, ev.ActivationFailed)]
    assert failed and failed[0].kept and "answered 500" in failed[0].reason
    assert tree(workspace.target("kept")) == {"index.html": "v1"}


def test_a_failing_action_with_rollback_puts_the_previous_release_back_and_activates_it(workspace, tmp_path):
    log, broken = tmp_path / "activations", tmp_path / "broken-revision"
    broken.write_text("none")
    action = f'test "$SLUICE_REVISION" != "$(cat {broken})" || exit 7; ' + RECORD.format(log=log)
    repo, services = workspace.app_with({"index.html": "v1"}, name="rb", layout="site",
                                        activate=[{"command": action}], on_failure="rollback")
    first = sync_and_wait(services, "rb")
    broken.write_text(repo.commit({"index.html": "v2"}))       # v2 will not activate

    d = sync_and_wait(services, "rb")

    assert d.status == "failed" and "exited with code 7" in d.message and "rolled back to release" in d.message
    assert tree(workspace.target("rb")) == {"index.html": "v1"}
    assert services.projections.app("rb").active.id == first.id
    assert log.read_text().splitlines()[-1].split()[3] == first.release    # activated again
    assert [e.type for e in events_of(services, "rb", d.id)][-4:] == [
        "ActivationFailed", "RevisionRejected", "DeploymentRolledBack", "DeploymentFailed"]


def test_rolling_back_a_first_release_removes_the_target(workspace):
    repo, services = workspace.app_with({"index.html": "v1"}, name="first", layout="site",
                                        activate=[{"command": "exit 9"}], on_failure="rollback")

    d = sync_and_wait(services, "first")

    assert d.status == "failed" and "nothing was live before" in d.message, d.message
    assert not os.path.lexists(workspace.target("first"))
    assert services.projections.app("first").active is None
