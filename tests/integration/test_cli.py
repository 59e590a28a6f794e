"""The `sluice` command as users run it: a real process, real exit codes, real output."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.runtime.embedded_redis import free_port
from tests.helpers import FUNCTION_APP, git_app, wait_for, write_config
from tests.integration.flow import sync_and_wait
from tests.integration.recorded import record_deployments


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read()
    except OSError:
        return None


def sluice(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


BAD_CONFIGS = {
    "unknown key": ("apps:\n  hello:\n    target: ./t\n    tagret: 1\n"
                    "    source: {type: git, url: ./r}\n", "apps.hello.tagret: unknown key"),
    "bad duration": ("apps:\n  hello:\n    target: ./t\n"
                     "    source: {type: git, url: ./r, poll_interval: often}\n",
                     "apps.hello.source.poll_interval: invalid duration 'often'"),
    "missing field": ("apps:\n  hello:\n    source: {type: git, url: ./r}\n",
                      "apps.hello.target: required key is missing"),
    "duplicate target": ("apps:\n  a:\n    target: ./t\n    source: {type: git, url: ./r}\n"
                         "  b:\n    target: ./t/\n    source: {type: git, url: ./r}\n",
                         "apps.b.target:"),
    "bad app name": ("apps:\n  Hello_World:\n    target: ./t\n    source: {type: git, url: ./r}\n",
                     "app name 'Hello_World' must match"),
    "unknown source type": ("apps:\n  a:\n    target: ./t\n    source: {type: svn, url: ./r}\n",
                            "apps.a.source: unknown source type 'svn'"),
    "unset variable": ("redis_url: ${SLUICE_TEST_UNSET}\n",
                       "redis_url: environment variable SLUICE_TEST_UNSET is not set"),
    "not yaml": ("apps: [\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_bad_config_names_the_key_and_exits_2_without_a_traceback(tmp_path, case):
    text, expected = BAD_CONFIGS[case]
    (tmp_path / "bad.yaml").write_text(text)

    result = sluice("--config", str(tmp_path / "bad.yaml"), "check-config")

    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert "bad.yaml" in result.stderr


def test_check_config_accepts_a_good_file_and_expands_environment_variables(tmp_path):
    (tmp_path / "ok.yaml").write_text(
        "data_dir: ${SLUICE_TEST_DIR}/var\napps:\n  hello:\n    target: ./t\n"
        "    source: {type: git, url: 'https://user:s3cret@example.invalid/r.git'}\n")

    result = sluice("--config", str(tmp_path / "ok.yaml"), "check-config",
                    env={"SLUICE_TEST_DIR": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    assert f"data_dir {tmp_path}/var" in result.stdout and "1 app(s)" in result.stdout
    assert "s3cret" not in result.stdout


def test_deployments_json_lists_newest_first_with_the_documented_fields(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    first = sync_and_wait(services, "hello")
    second = sync_and_wait(services, "hello")

    result = sluice("--config", str(workspace.config_path), "deployments", "hello", "--json")

    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [second.id, first.id]
    assert {"id", "status", "revision", "snapshot", "active", "trigger", "message",
            "received_at", "started_at", "ended_at"} <= rows[0].keys()
    assert [(r["status"], r["active"], r["trigger"]) for r in rows] == [
        ("skipped", False, "manual"), ("success", True, "manual")]
    assert rows[1]["ended_at"].endswith("Z")


def test_deployments_shows_the_newest_20_unless_given_a_limit_or_all(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    ids = record_deployments(services, "hello", 25)[::-1]
    config = str(workspace.config_path)

    listed = [[r["id"] for r in json.loads(sluice("--config", config, "deployments", "hello", "--json", *more).stdout)]
              for more in ((), ("--limit", "3"), ("--all",))]
    table = sluice("--config", config, "deployments", "hello", "-n", "2")

    assert listed == [ids[:20], ids[:3], ids]
    assert ids[0] in table.stdout and ids[2] not in table.stdout and "--all" in table.stdout


def test_events_json_prints_one_object_per_event_in_order(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")

    result = sluice("--config", str(workspace.config_path), "events", "hello", "--json")

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["version"] for e in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[-1]["type"] == "DeploymentSucceeded" and lines[-1]["app"] == "hello"


def test_sync_of_an_unknown_app_says_which_apps_exist(workspace):
    workspace.configure({})

    result = sluice("--config", str(workspace.config_path), "sync", "nope")

    assert result.returncode == 2 and "unknown app 'nope'" in result.stderr


def test_a_sync_of_a_rejected_head_says_why_and_fails_and_with_force_deploys_it(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    revision = repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})
    reason = "health: GET http://127.0.0.1:9/ answered 500 (3 of 3 probes failed)"
    # what a worker records when the revision rolled back by itself
    execute(services.projections, "hello", lambda view: [ev.RevisionRejected(
        app="hello", at=time.time(), revision=revision, deployment_id="d-rolled-back", reason=reason)])
    config, wide = str(workspace.config_path), {"COLUMNS": "300"}

    refused = sluice("--config", config, "sync", "hello", env=wide)
    apps = sluice("--config", config, "apps", env=wide)
    forced = sluice("--config", config, "sync", "hello", "--force", "--wait", env=wide)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"hello: {revision[:12]}: not deployed: revision {revision[:12]} was rejected: {reason}; " \
           "`sluice sync hello --force` deploys it anyway" in refused.stdout
    assert f"rejected {revision[:12]}: health: GET" in apps.stdout and "answered 500" in apps.stdout
    assert forced.returncode == 0 and "success" in forced.stdout, forced.stdout + forced.stderr
    view = services.projections.app("hello")
    assert view.active.revision == revision and view.rejected == {}


def test_the_options_of_every_command_may_also_follow_the_command(workspace):
    workspace.app_with(FUNCTION_APP)
    config = str(workspace.config_path)
    env = {"SLUICE_CONFIG": str(workspace.root / "missing.yaml")}     # what --config overrides

    short = sluice("deployments", "hello", "-c", config, "--json", env=env)
    long = sluice("check-config", f"--config={config}", "--log-format", "json", "--log-level", "DEBUG",
                  env=env)
    nested = sluice("credentials", "show", "hello", "--config", config, env=env)
    refused = sluice("apps", "--config", config, "--log-format", "xml", env=env)

    assert short.returncode == 0 and json.loads(short.stdout) == [], short.stderr
    assert long.returncode == 0 and f"{workspace.config_path.resolve()}: OK, 1 app(s)" in long.stdout, long.stderr
    assert nested.returncode == 1 and "app 'hello' has no deployment credentials" in nested.stderr
    assert refused.returncode == 2 and "--log-format" in refused.stderr


def test_tables_show_whole_ids_and_revisions_even_80_columns_wide_through_a_pipe(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    first = sync_and_wait(services, "hello")
    repo.commit({"host.json": '{"version": "2.0", "n": 2}'})
    second = sync_and_wait(services, "hello")
    config, narrow = str(workspace.config_path), {"COLUMNS": "80"}

    deployments = sluice("--config", config, "deployments", "hello", env=narrow)
    apps = sluice("--config", config, "apps", env=narrow)

    assert deployments.returncode == 0 and apps.returncode == 0, deployments.stderr + apps.stderr
    for d in (first, second):
        assert d.id in deployments.stdout and d.revision[:12] in deployments.stdout, deployments.stdout
    assert second.id in apps.stdout and second.revision[:12] in apps.stdout, apps.stdout
    assert max(len(line) for line in (deployments.stdout + apps.stdout).splitlines()) <= 80


def test_commands_without_a_running_redis_say_how_to_start_one(tmp_path):
    app = {"target": str(tmp_path / "t"), "source": {"type": "git", "url": str(tmp_path)}}
    write_config(tmp_path / "c.yaml", tmp_path / "var", {"hello": app})

    result = sluice("--config", str(tmp_path / "c.yaml"), "apps")

    assert result.returncode == 2 and "sluice up" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_runs_embedded_redis_worker_and_poller_and_a_commit_goes_live(tmp_path):
    from tests.helpers import GitRepo
    repo = GitRepo(tmp_path / "repo")
    repo.commit(FUNCTION_APP)
    target = tmp_path / "sites" / "hello"
    port = free_port()
    config = write_config(tmp_path / "sluice.yaml", tmp_path / "var",
                          {"hello": git_app(repo, target)}, api={"listen": f"127.0.0.1:{port}"})
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_REDIS_URL", "SLUICE_CONFIG")}
    log = open(tmp_path / "up.log", "w")
    up = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(config), "up"],
                          stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: (target / "host.json").exists(), timeout=60, what="the first deployment")
        repo.commit({"host.json": '{"version": "2.0", "n": 2}'})
        wait_for(lambda: '"n": 2' in (target / "host.json").read_text(), timeout=30,
                 what="the commit to go live")
        listed = sluice("--config", str(config), "deployments", "hello", "--json", env=env)
        assert [d["status"] for d in json.loads(listed.stdout)] == ["success", "success"]
        health = wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), what="the API")
        assert json.loads(health) == {"status": "ok"}
        url_file = tmp_path / "var" / "redis" / "url"
        password = (url_file.parent / "password").read_text().strip()
        assert f":{password}@" in url_file.read_text()
        assert (stat.S_IMODE(url_file.stat().st_mode), stat.S_IMODE(url_file.parent.stat().st_mode)) == (
            0o600, 0o700)
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
        log.close()
    output = Path(log.name).read_text()
    assert code == 0, output
    assert password not in output and "embedded Redis redis://127.0.0.1:" in output
    assert not (tmp_path / "var" / "redis" / "url").exists()
    assert "sluice is up" in output and "worker ready: queue deploy, concurrency 1" in output
    for celerys_own in ("celery@", "[config]", "-------------- ", "[tasks]", "superuser privileges"):
        assert celerys_own not in output, output
