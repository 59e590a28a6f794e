"""Session-wide real infrastructure: a redis-server on a free loopback port and a Celery
worker process. Nothing of our own infrastructure is mocked."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from orchestrator.config.settings import load_config
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services
from tests.helpers import GIT_ENV, GitRepo, git_app, wait_for, write_config
from workers.runner import WorkerContext

os.environ.update(GIT_ENV)
# ssh to the host ssh.sluice.test runs the remote command locally (tests/servers/fake_ssh.py),
# for this process and the workers it starts.
os.environ.update(SLUICE_TEST_PYTHON=sys.executable, PATH=os.pathsep.join(
    [str(Path(__file__).parent / "servers" / "bin"), os.environ.get("PATH", "")]))
# A secret in the worker's environment for configs to take as ${TEST_TOKEN} (tests of masking).
os.environ.setdefault("TEST_TOKEN", "tk-7f3a9c41e2b8d605")


@pytest.fixture(scope="session", autouse=True)
def private_cache_folder(tmp_path_factory):
    """`sluice apps` keeps a summary of each config it read under $XDG_CACHE_HOME/sluice
    (cli/fleet_summary.py): the session's, not the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    terminate(proc)


@pytest.fixture(scope="session")
def worker_config_path(tmp_path_factory) -> Path:
    """The one config file the session's worker reads; each test writes its apps into it."""
    return tmp_path_factory.mktemp("config") / "sluice.yaml"


@pytest.fixture(scope="session")
def cloud_fakes():
    """The session's fake Dropbox and Microsoft Graph (HTTPS, a throwaway CA). Set before the
    worker starts: the dropbox SDK reads its hosts from the environment when imported (so it
    is re-imported here if a test module imported it first), and requests trusts
    REQUESTS_CA_BUNDLE."""
    from tests.servers.fake_dropbox import FakeDropbox
    from tests.servers.fake_graph import FakeGraph

    with FakeDropbox() as dropbox_fake, FakeGraph() as graph_fake:
        os.environ.update(dropbox_fake.hosts, REQUESTS_CA_BUNDLE=dropbox_fake.ca_bundle)
        if "dropbox" in sys.modules:        # imported while collecting: aim it at the fake
            import dropbox.dropbox_client
            import dropbox.session
            for module in (dropbox.session, dropbox.dropbox_client, dropbox):
                importlib.reload(module)    # also rebinds dropbox.Dropbox, whose refresh
                                            # host is a default argument fixed at definition
        yield dropbox_fake, graph_fake


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory) -> Path:
    """Where the session's worker writes its log lines (every test's, appended)."""
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def celery_worker(redis_url, worker_config_path, tmp_path_factory, cloud_fakes, worker_log):
    write_config(worker_config_path, tmp_path_factory.mktemp("idle"), {}, redis_url)
    log = open(worker_log, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "--config", str(worker_config_path),
         "worker", "--concurrency", "2"],
        env={**os.environ, "SLUICE_REDIS_URL": redis_url}, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent)
    try:
        wait_for(lambda: "ready." in Path(log.name).read_text() or proc.poll() is not None,
                 timeout=60, what="the Celery worker to start")
        assert proc.poll() is None, Path(log.name).read_text()
        yield proc
    finally:                                # a worker that never said ready is stopped too
        terminate(proc)
        log.close()


@pytest.fixture
def clean_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    # A deployment an earlier test left running would append to the streams cleaned here and
    # hand this test's app a history (same files, same second: the same commit id).
    # (A lease a test left behind on purpose expires by itself: wait for it, never fail.)
    deadline = time.monotonic() + 30
    while deployments_running(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    for key in client.scan_iter("sluice:*"):
        client.delete(key)
    return client


def deployments_running(client: redis.Redis) -> list[bytes]:
    return [k for k in client.scan_iter("sluice:lease:*") if not k.endswith(b":fence")]


class Workspace:
    """One test's world: repositories, a data dir, a config the worker also reads."""

    def __init__(self, root: Path, config_path: Path, redis_url: str):
        self.root, self.config_path, self.redis_url = root, config_path, redis_url
        self.data_dir = root / "var"

    def repo(self, name: str = "repo", branch: str = "master") -> GitRepo:
        return GitRepo(self.root / name, branch)

    def configure(self, apps: dict, **settings) -> Services:
        write_config(self.config_path, self.data_dir, apps, self.redis_url, **settings)
        return Services.build(load_config(self.config_path))

    def worker_context(self, services: Services) -> WorkerContext:
        """What a worker process has, for driving the runner from the test itself."""
        return WorkerContext(services, SnapshotStore(self.data_dir / "store"), "test-worker")

    def target(self, app: str) -> Path:
        return self.root / "sites" / app

    def app_with(self, files: dict, name: str = "hello", **source) -> tuple[GitRepo, Services]:
        """A repository holding `files` and one app deploying it (source options as given)."""
        repo = self.repo()
        repo.commit(files)
        return repo, self.configure({name: git_app(repo, self.target(name), **source)})


@pytest.fixture
def workspace(tmp_path, worker_config_path, redis_url, clean_redis, celery_worker) -> Workspace:
    return Workspace(tmp_path, worker_config_path, redis_url)


@pytest.fixture
def proxy_environment(monkeypatch):
    """No proxy variables but those a test sets (monkeypatch.setenv on what it yields); each
    origin's proxy is looked up again."""
    from orchestrator.sources import proxies
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    proxies.forget()
    yield monkeypatch
    proxies.forget()


@pytest.fixture
def release_host(tmp_path):
    """Starts the tests' app host (tests/servers/release_host.py) serving `target`'s release:
    `release_host(target)` -> ReleaseHost (url, pidfile, reload(), restart_command()). Each
    is stopped after the test, restarted by an `activate` command or not."""
    from tests.servers.release_host import ReleaseHost

    started: list = []

    def start(target: Path, name: str = "host") -> ReleaseHost:
        started.append(ReleaseHost(target, tmp_path / name).start())
        return started[-1]
    yield start
    for host in started:
        host.stop()
