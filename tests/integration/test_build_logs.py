"""A build's output in the deployment's log while it runs (issue 14): `sluice log --follow`,
`sluice sync --wait` and the API, with the real CLI, the real API app and the session's worker;
and the API's `rebuild`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from fastapi.testclient import TestClient

from orchestrator.api import create_app
from orchestrator.core import events as ev
from orchestrator.deploying.sync import sync_now
from tests.helpers import git_app, wait_for
from tests.integration.flow import sync_and_wait, wait_until_ended, wait_until_let_go

LOCAL = "http://localhost"        # a Host the API answers to
LOOPBACK = ("127.0.0.1", 50000)   # loopback clients read without a token
TOKEN = "t0ken-for-build-log-tests"
KUDU = {"index.html": "x\n", ".deployment": "[config]\ncommand = deploy.sh\n"}
COPY = 'cp -r "$DEPLOYMENT_SOURCE"/. "$DEPLOYMENT_TARGET"/\n'


def kudu_app(workspace, name: str, script: str, build: dict | None = None, **settings):
    """An app whose .deployment runs deploy.sh: `script`, then what it copies is deployed."""
    repo = workspace.repo()
    repo.commit({**KUDU, "deploy.sh": "#!/bin/sh\n" + script})
    os.chmod(repo.path / "deploy.sh", 0o755)
    repo.commit({}, "executable")
    app = git_app(repo, workspace.target(name), layout="site", build=build or "auto")
    return repo, workspace.configure({name: app}, **settings)


def sluice(workspace, *args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "--config", str(workspace.config_path), *args]


def output_of(services, app: str, deployment_id: str) -> list[str]:
    return [line for r in services.store.read(app) if isinstance(r.event, ev.BuildOutput)
            and r.event.deployment_id == deployment_id for line in r.event.lines]


class Reader:
    """A process's stdout lines as they come, read by a thread (so a test can wait for one)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)


PAUSES = ('echo "before the pause"\n'
          'while [ ! -e "$FLAG" ]; do sleep 0.1; done\n'
          'echo "after the pause"\n' + COPY)


def test_log_follow_prints_the_builds_lines_as_they_come_and_exits_when_the_deployment_ends(workspace, tmp_path):
    flag = tmp_path / "go-on"
    repo, services = kudu_app(workspace, "paused", PAUSES, build={"env": {"FLAG": str(flag)}})
    queued = sync_now(services, "paused")
    # the line goes to the log though the build prints nothing more until the flag is there
    wait_for(lambda: "before the pause" in output_of(services, "paused", queued.deployment_id),
             timeout=60, what="the build's first line in the log")

    proc = subprocess.Popen(sluice(workspace, "log", queued.deployment_id, "--follow"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        reader = Reader(proc)
        wait_for(lambda: reader.saw("before the pause"), timeout=60, what="sluice log to show the log so far")
        assert proc.poll() is None and not reader.saw("after the pause")
        flag.touch()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.thread.join(timeout=10)

    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    after = next(i for i, line in enumerate(reader.lines) if "after the pause" in line)
    assert "live: the target shows release" in reader.lines[-1] and after < len(reader.lines) - 1
    assert wait_until_ended(services, "paused", queued.deployment_id).status == "success"
    wait_until_let_go(services, "paused")


def test_log_follow_of_a_deployment_that_ended_prints_its_log_and_exits(workspace):
    repo, services = kudu_app(workspace, "done", 'echo "built it"\n' + COPY)
    d = sync_and_wait(services, "done", timeout=60)

    done = subprocess.run(sluice(workspace, "log", d.id, "--follow", "--json"), capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"step": "custom", "message": "built it"}.items() <= next(
        line for line in lines if line["message"] == "built it").items()
    assert lines[-1]["step"] == "live"


def test_sync_wait_prints_the_builds_output_bounded_as_the_log_is(workspace):
    script = 'i=0; while [ $i -lt 2100 ]; do i=$((i+1)); echo "line $i"; done\n' + COPY
    repo, services = kudu_app(workspace, "chatty", script)

    done = subprocess.run(sluice(workspace, "sync", "chatty", "--wait"), capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    shown = done.stdout.splitlines()
    assert "custom: line 1" in shown and "custom: line 2000" in shown
    assert "custom: line 2001" not in shown
    assert "custom: ... 100 more lines of output left out of the log" in shown
    assert "success" in shown[-1]
    wait_until_let_go(services, "chatty")


def test_the_api_log_holds_the_builds_lines(workspace):
    repo, services = kudu_app(workspace, "api-log", 'echo "from the build"\n' + COPY)
    d = sync_and_wait(services, "api-log", timeout=60)
    client = TestClient(create_app(services), base_url=LOCAL, client=LOOPBACK)

    body = client.get(f"/api/deployments/{d.id}/log").json()

    steps = [(line["step"], line["message"]) for line in body["lines"]]
    assert ("custom", "from the build") in steps
    assert [s for s, _ in steps].index("build") < steps.index(("custom", "from the build"))


def built(services, deployment_id: str) -> list[bool]:
    """Whether each build of the deployment came from the cache."""
    return [r.event.cached for r in services.store.read("rebuilt")
            if isinstance(r.event, ev.BuildSucceeded) and r.event.deployment_id == deployment_id]


def queued_rebuild(services, app: str, deployment_id: str) -> bool:
    return next(r.event.rebuild for r in services.store.read(app)
                if isinstance(r.event, ev.DeploymentQueued) and r.event.deployment_id == deployment_id)


def test_the_apis_sync_and_redeploy_take_rebuild_in_the_query_or_the_body(workspace):
    repo, services = kudu_app(workspace, "rebuilt", 'echo "building"\n' + COPY, api={"token": TOKEN})
    first = sync_and_wait(services, "rebuilt", timeout=60)
    client = TestClient(create_app(services), base_url=LOCAL, headers={"Authorization": f"Bearer {TOKEN}"})

    outcomes = []
    for path, kwargs in [("/api/apps/rebuilt/redeploy", {}),
                         ("/api/apps/rebuilt/redeploy", {"json": {"rebuild": True}}),
                         ("/api/apps/rebuilt/redeploy", {"params": {"rebuild": "true"}}),
                         ("/api/apps/rebuilt/sync", {"params": {"rebuild": "true"}}),
                         ("/api/apps/rebuilt/sync", {"json": {"rebuild": True}})]:
        response = client.post(path, **kwargs)
        assert response.status_code == 202, response.text
        deployment_id = response.json()["deployment_id"]
        d = wait_until_ended(services, "rebuilt", deployment_id, timeout=60)
        wait_until_let_go(services, "rebuilt")
        outcomes.append((queued_rebuild(services, "rebuilt", deployment_id), built(services, d.id)))

    assert first.status == "success"
    assert outcomes == [(False, []),                     # the live snapshot again: nothing built
                        (True, [False]), (True, [False]), (True, [False]), (True, [False])]
