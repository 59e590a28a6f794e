"""`sluice up` as an operator runs it, its children killed with kill -9 and the whole of it
stopped with SIGTERM while a deployment hangs: what dies comes back, and a stop is a stop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import redis

from orchestrator.core import keys
from orchestrator.runtime.embedded_redis import free_port
from tests.helpers import CLOUD_SITE, FUNCTION_APP, GitRepo, git_app, wait_for, write_config
from tests.process_tree import alive, children_of, descendants_of
from tests.servers.receiver import receiver

HANG_GUARD = 15.0       # the children get 10 s together: this only catches a stop that hangs


class Up:
    """A `sluice up` on its own embedded Redis, data dir and API port; output in up.log."""

    def __init__(self, root: Path, apps: dict, **settings):
        self.root, self.port = root, free_port()
        self.config = write_config(root / "sluice.yaml", root / "var", apps,
                                   api={"listen": f"127.0.0.1:{self.port}"}, **settings)
        self.url_file = root / "var" / "redis" / "url"
        env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_REDIS_URL", "SLUICE_CONFIG")}
        self._log = open(root / "up.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config",
                                      str(self.config), "up"],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.env = env

    def output(self) -> str:
        return (self.root / "up.log").read_text()

    def child(self, marker: str) -> int | None:
        """The pid of the child whose command line holds `marker` (a subcommand, redis-server)."""
        found = [pid for pid, argv in children_of(self.proc.pid).items() if marker in argv]
        return found[0] if found else None

    def sluice(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(self.config),
                               *args], capture_output=True, text=True, timeout=60, env=self.env)

    def stop(self, timeout: float = HANG_GUARD) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def deployments(up: Up) -> list[dict]:
    listed = up.sluice("deployments", "hello", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def pong(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.ConnectionError:
        return False


def restarted(up: Up, marker: str, old: int, timeout: float = 30) -> int:
    return wait_for(lambda: (pid := up.child(marker)) and pid != old and pid, timeout=timeout,
                    what=f"{marker} to be started again")


@pytest.fixture
def git_up(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(FUNCTION_APP)
    target = tmp_path / "sites" / "hello"
    up = Up(tmp_path, {"hello": git_app(repo, target)})
    try:
        wait_for(lambda: (target / "host.json").exists(), timeout=90, what="the first deployment")
        yield up, repo, target
    finally:
        up.close()


def goes_live(repo: GitRepo, target: Path, n: int) -> None:
    repo.commit({"host.json": f'{{"version": "2.0", "n": {n}}}'})
    wait_for(lambda: f'"n": {n}' in (target / "host.json").read_text(), timeout=60,
             what=f"commit {n} to go live")


def test_a_killed_embedded_redis_comes_back_on_its_url_with_its_data_and_deployments_go_on(git_up):
    up, repo, target = git_up
    url, old = up.url_file.read_text().strip(), up.child("redis-server")
    before = deployments(up)

    os.kill(old, signal.SIGKILL)
    new = restarted(up, "redis-server", old)

    assert not alive(old) and old not in children_of(up.proc.pid)     # reaped, no zombie
    assert up.url_file.read_text().strip() == url
    wait_for(lambda: pong(url), timeout=15, what="PONG")    # its process shows before it listens
    # by `sluice sync`: a head check the kill cut short leaves its poller's claim for 120 s
    repo.commit({"host.json": '{"version": "2.0", "n": 2}'})
    synced = up.sluice("sync", "hello", "--wait")
    assert synced.returncode == 0 and '"n": 2' in (target / "host.json").read_text(), synced.stderr
    after = deployments(up)         # the poller may deploy the head first: the sync is skipped
    assert [d["status"] for d in before] == ["success"]
    assert {d["id"]: d["status"] for d in after}[before[0]["id"]] == "success"
    assert [d["status"] for d in after].count("success") == 2
    assert up.stop() == 0 and not alive(new)
    assert f"redis (pid {old}) killed by SIGKILL" in up.output()


def test_a_killed_worker_and_poller_are_started_again_and_deployments_go_on(git_up):
    up, repo, target = git_up
    client = redis.Redis.from_url(up.url_file.read_text().strip())
    for n, name in enumerate(["worker", "poller"], start=2):
        # the lease is held a moment after the site is live: a kill then is a lost deployment,
        # which tests/faults/test_worker_crashes.py covers
        wait_for(lambda: not client.exists(keys.lease("hello")), what="the worker to let go")
        old = up.child(f"cli {name}")
        left_behind = descendants_of(old)   # a worker's pool process

        os.kill(old, signal.SIGKILL)
        restarted(up, f"cli {name}", old)

        assert not alive(old) and old not in children_of(up.proc.pid)
        assert not any(alive(pid) for pid in left_behind), f"{name}'s children outlived it"
        goes_live(repo, target, n)
        assert f"{name} (pid {old}) killed by SIGKILL" in up.output()
    assert up.stop() == 0


def test_sluice_up_runs_the_notifier_when_a_channel_is_configured_and_it_tells_the_receiver(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(FUNCTION_APP)
    target = tmp_path / "sites" / "hello"
    with receiver() as hook:
        up = Up(tmp_path, {"hello": git_app(repo, target)}, notify=[{"type": "webhook", "url": hook.url}])
        try:
            wait_for(lambda: (target / "host.json").exists(), timeout=90, what="the first deployment")
            client = redis.Redis.from_url(up.url_file.read_text().strip())
            # the notifier starts at the feed's end: a change after its group exists
            wait_for(lambda: client.exists(keys.FEED) and client.xinfo_groups(keys.FEED), what="its group")
            goes_live(repo, target, 2)
            told = wait_for(lambda: [r for r in hook.received
                                     if r.json()["deployment"]["revision"] == repo.head()], what="the change told")
            notifier = up.child("cli notifier")

            assert notifier is not None
            assert [r.event for r in told] == ["DeploymentSucceeded"] and told[0].json()["app"] == "hello"
            assert up.stop() == 0 and not alive(notifier)
        finally:
            up.close()


def test_sluice_up_runs_no_notifier_without_a_channel(git_up):
    up, _, _ = git_up
    assert up.child("cli worker") and up.child("cli notifier") is None


def test_sigterm_stops_sluice_up_and_all_it_started_while_a_deployment_hangs(tmp_path, cloud_fakes):
    """The worker's deployment is stuck in a download Dropbox throttles for two minutes,
    event streams are open: the worker is given the grace and then killed."""
    dbx = cloud_fakes[0]
    dbx.reset()
    for name, content in CLOUD_SITE.items():
        dbx.put(f"/Apps/Site/{name}", content)
    dbx.fail_next("files/download", 429, retry_after=120)
    source = {"type": "dropbox", "path": "/Apps/Site", "app_key": dbx.app_key,
              "app_secret": dbx.app_secret, "refresh_token": dbx.refresh_token}
    up = Up(tmp_path, {"site": {"layout": "site", "target": str(tmp_path / "site"), "source": source}})
    streams = []
    try:
        wait_for(lambda: dbx.requests["files/download"] >= 1, timeout=90, what="the download")
        for _ in range(2):
            streams.append(urllib.request.urlopen(f"http://127.0.0.1:{up.port}/api/events", timeout=30))
        everything = descendants_of(up.proc.pid)

        code = up.stop()

        assert code == 0, up.output()
        assert not [pid for pid in everything if alive(pid)]
        assert not up.url_file.exists()
        assert "worker did not stop within 10s: killed" in up.output()
    finally:
        for stream in streams:
            stream.close()
        up.close()
        dbx.reset()
