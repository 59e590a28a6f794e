"""One Sluice deploying an app to several hosts (issue 19), on one machine: the session's
worker builds each snapshot, two or three `sluice worker --host` processes with data dirs of
their own (no shared folder) fetch what they lack from the API and switch their targets."""
from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml

from orchestrator.api import create_app
from orchestrator.core.projections import DeploymentView
from orchestrator.deploying.import_export import export_release
from orchestrator.deploying.rollback import rollback
from orchestrator.deploying.task_queue import send_host
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, GitRepo, git_app, wait_for
from tests.integration.flow import sync_and_wait, sync_now, tree, wait_until_ended
from tests.integration.host_workers import HostWorker, forget_host_queues
from tests.servers.api_server import serving
from tests.servers.receiver import Answer, receiver

WORKER_TOKEN = "worker-token-0123456789"
HOSTS = ["web1", "web2"]


@dataclass
class Fleet:
    root: Path
    repo: GitRepo
    services: Services
    api: object
    workers: dict[str, HostWorker]

    def target(self, host: str) -> Path:
        return self.root / "sites" / host / "hello"

    def deploy(self, files: dict) -> DeploymentView:
        self.repo.commit(files)
        return sync_and_wait(self.services, "hello", timeout=60)

    @property
    def blobs_served(self) -> int:
        return self.api.state.served_store.served.blobs       # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fleet_of(workspace, redis_url):
    """fleet_of(hosts, workers=hosts, **app settings): the app `hello` on `hosts`, the API
    serving the store, a worker for each of `workers`."""
    started: list[HostWorker] = []
    serving_now = []

    def make(hosts: list[str], workers: list[str] | None = None, **settings) -> Fleet:
        forget_host_queues(redis.Redis.from_url(redis_url), HOSTS + ["web3"])
        port = free_port()
        repo = workspace.repo()
        repo.commit(FUNCTION_APP)
        services = workspace.configure(
            {"hello": git_app(repo, workspace.root / "sites" / "{host}" / "hello", hosts=hosts, **settings)},
            api={"worker_token": WORKER_TOKEN},
            worker={"store_url": f"http://127.0.0.1:{port}", "converge_interval": "1s"}, gc_interval="0s")
        api = create_app(services)
        context = serving(services, api, port=port)
        context.__enter__()
        serving_now.append(context)
        workers_now = {}
        for name in hosts if workers is None else workers:
            workers_now[name] = HostWorker(name, workspace.root, workspace.config_path, redis_url).start()
            started.append(workers_now[name])
        return Fleet(workspace.root, repo, services, api, workers_now)
    yield make
    for worker in started:
        worker.stop()
    for context in serving_now:
        context.__exit__(None, None, None)


def test_a_change_goes_live_on_every_host_and_a_one_file_change_moves_one_blob_per_host(fleet_of):
    fleet = fleet_of(HOSTS)
    first = sync_and_wait(fleet.services, "hello", timeout=60)

    assert first.status == "success", first.message
    assert first.hosts == {"web1": "switched", "web2": "switched"}
    for host in HOSTS:
        assert tree(fleet.target(host)) == FUNCTION_APP
        assert str(fleet.target(host).resolve()).startswith(str(fleet.workers[host].data_dir))
    assert fleet.services.projections.app("hello").hosts == {"web1": first.id, "web2": first.id}
    blobs_before = fleet.blobs_served

    second = fleet.deploy({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})

    assert second.status == "success", second.message
    assert fleet.blobs_served - blobs_before == 2, "one blob to each host"
    for host in HOSTS:
        assert tree(fleet.target(host))["HttpHello/__init__.py"] == "def main(req):\n    return 'v2'\n"


@pytest.fixture
def health():
    """A health endpoint per host: /health/web2 answers 503 while `unhealthy` holds it."""
    with receiver() as endpoint:
        endpoint.unhealthy = set()      # type: ignore[attr-defined]
        endpoint.answers = lambda r: Answer(503, "down") if r.path.rsplit("/", 1)[-1] in endpoint.unhealthy \
            else Answer(200, "ok")
        yield endpoint


def v2(fleet: Fleet) -> str:
    fleet.repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})
    return fleet.repo.head()


def test_a_rolling_rollout_with_an_unhealthy_host_switches_the_done_ones_back(fleet_of, health):
    fleet = fleet_of(HOSTS, rollout={"batch": 1},
                     health={"url": health.url + "/health/{host}", "interval": "0.1s", "deadline": "1s"})
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    assert first.status == "success", first.message
    health.unhealthy.add("web2")
    v2(fleet)

    failed = sync_and_wait(fleet.services, "hello", timeout=60)

    assert failed.status == "failed"
    assert "web2: health: GET" in failed.message and "answered 503" in failed.message
    assert "switched back: web1" in failed.message
    assert failed.hosts == {"web1": "rolled back", "web2": failed.hosts["web2"]}
    assert failed.hosts["web2"].startswith("unhealthy: health")
    assert failed.revision in fleet.services.projections.app("hello").rejected, "not deployed again by itself"
    for host in HOSTS:
        assert tree(fleet.target(host)) == FUNCTION_APP, f"{host} shows the release live before"
    assert fleet.services.projections.app("hello").hosts == {"web1": first.id, "web2": first.id}


def test_a_host_killed_mid_rollout_fails_the_deployment_and_converges_when_it_comes_back(fleet_of, health):
    fleet = fleet_of(HOSTS, host_timeout="4s",
                     health={"url": health.url + "/health/{host}", "interval": "0.1s", "deadline": "60s"})
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    health.unhealthy.add("web2")
    v2(fleet)
    queued = sync_now(fleet.services, "hello")
    # web2 switched, and is probing its release's health when its worker dies
    wait_for(lambda: queued.deployment_id in str(fleet.target("web2").resolve()), timeout=30,
             what="web2 to switch")
    fleet.workers["web2"].kill()

    failed = wait_until_ended(fleet.services, "hello", queued.deployment_id, timeout=60)

    assert failed.status == "failed" and "web2: no answer within host_timeout (4 s)" in failed.message
    assert tree(fleet.target("web1")) == FUNCTION_APP, "web1 switched back"
    assert "v2" in tree(fleet.target("web2"))["HttpHello/__init__.py"], "web2 died switched"

    health.unhealthy.clear()
    fleet.workers["web2"].start()

    wait_for(lambda: tree(fleet.target("web2")) == FUNCTION_APP, timeout=30, what="web2 to converge")
    converged = [r.event for r in fleet.services.store.read("hello")
                 if r.event.type == "HostSwitched" and r.event.converged]
    assert [(e.host, e.deployment_id) for e in converged] == [("web2", first.id)]


def test_a_host_added_to_the_app_receives_the_active_release_without_a_deployment(fleet_of, workspace):
    fleet = fleet_of(["web1"], workers=["web1", "web2"])
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    assert first.status == "success", first.message
    config = yaml.safe_load(workspace.config_path.read_text())
    config["apps"]["hello"]["hosts"] = HOSTS
    workspace.config_path.write_text(yaml.safe_dump(config))

    wait_for(lambda: fleet.target("web2").exists() and tree(fleet.target("web2")) == FUNCTION_APP,
             timeout=30, what="web2 to receive the active release")
    assert fleet.services.projections.app("hello").hosts == {"web1": first.id, "web2": first.id}
    assert len(fleet.services.projections.app("hello").deployments) == 1


def test_a_blob_corrupted_on_its_way_to_a_host_is_refused_by_its_hash_and_kept_nowhere(fleet_of, workspace):
    fleet = fleet_of(["web1"], workers=["web1", "web2"])
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    store = SnapshotStore(fleet.services.config.data_dir / "store")
    sha = hashlib.sha256(FUNCTION_APP["host.json"].encode()).hexdigest()
    blob = Path(store.blob_path(sha))
    blob.chmod(0o644)
    blob.write_text(FUNCTION_APP["host.json"].replace("2.0", "6.6"))     # what the API now sends
    config = yaml.safe_load(workspace.config_path.read_text())
    config["apps"]["hello"]["hosts"] = HOSTS
    workspace.config_path.write_text(yaml.safe_dump(config))

    def refused() -> str:
        d = fleet.services.projections.app("hello").deployments[first.id]
        return (d.hosts or {}).get("web2", "")
    wait_for(lambda: refused().startswith("failed"), timeout=30, what="web2 to refuse the blob")

    assert sha in refused() and hashlib.sha256(blob.read_bytes()).hexdigest() in refused()
    host_blob = Path(SnapshotStore(fleet.workers["web2"].data_dir / "store").blob_path(sha))
    assert not host_blob.exists() and not fleet.target("web2").exists()
    wait_for(lambda: fleet.workers["web2"].log.read_text().count("not converged") >= 2, timeout=30,
             what="web2 to try again")
    failures = [r for r in fleet.services.store.read("hello") if r.event.type == "HostFailed"]
    assert len(failures) == 1, "tried again each converge_interval, recorded once"


def test_a_stale_switch_reaching_a_host_late_does_nothing(fleet_of):
    fleet = fleet_of(["web1"])
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    v2(fleet)
    second = sync_and_wait(fleet.services, "hello", timeout=60)
    assert second.status == "success", second.message
    events = len(fleet.services.store.read("hello"))

    send_host(fleet.services.redis_url, "switch", "hello", "web1", first.id, 1, 0.0)     # redelivered, say

    wait_for(lambda: "switch: nothing to do" in fleet.workers["web1"].log.read_text(), timeout=30,
             what="web1 to take the stale switch")
    assert "v2" in tree(fleet.target("web1"))["HttpHello/__init__.py"]
    assert len(fleet.services.store.read("hello")) == events


def test_a_host_keeps_its_releases_bounded_recycles_a_spare_and_empties_its_trash(fleet_of):
    fleet = fleet_of(["web1"], keep_releases=1)
    sync_and_wait(fleet.services, "hello", timeout=60)
    for n in range(2, 6):
        d = fleet.deploy({"HttpHello/__init__.py": f"def main(req):\n    return 'v{n}'\n"})
        assert d.status == "success", d.message

    releases = fleet.workers["web1"].data_dir / "releases" / "hello"
    names = sorted(os.listdir(releases))
    spares = [n for n in names if n.startswith(".spare-")]
    assert len([n for n in names if not n.startswith(".")]) <= 2, names     # live and one kept
    assert len(spares) == 1, names
    assert not (releases / ".trash").exists() or not os.listdir(releases / ".trash")
    assert "v5" in tree(fleet.target("web1"))["HttpHello/__init__.py"]


def test_a_hosts_store_lets_go_of_what_no_kept_snapshot_holds(fleet_of):
    fleet = fleet_of(["web1"], keep_releases=1)
    sync_and_wait(fleet.services, "hello", timeout=60)
    store = SnapshotStore(fleet.workers["web1"].data_dir / "store")
    first_code = store.blob_path(hashlib.sha256(FUNCTION_APP["HttpHello/__init__.py"].encode()).hexdigest())
    for n in range(2, 5):
        fleet.deploy({"HttpHello/__init__.py": f"def main(req):\n    return 'v{n}'\n"})
    an_hour_ago = time.time() - 3600        # past the collection's grace for files being written
    for path in store.root.rglob("*"):
        os.utime(path, (an_hour_ago, an_hour_ago), follow_symlinks=False)
    assert os.path.exists(first_code)

    d = fleet.deploy({"HttpHello/__init__.py": "def main(req):\n    return 'v5'\n"})

    assert d.status == "success", d.message
    assert not os.path.exists(first_code), "no kept snapshot holds the first code any more"
    assert os.path.exists(store.blob_path(hashlib.sha256(FUNCTION_APP["host.json"].encode()).hexdigest()))
    assert "v5" in tree(fleet.target("web1"))["HttpHello/__init__.py"]
    kept = "def main(req):\n    return 'v4'\n"       # the release kept for a rollback
    assert os.path.exists(store.blob_path(hashlib.sha256(kept.encode()).hexdigest()))


def test_a_rollback_of_an_app_on_hosts_rolls_the_earlier_release_out_to_each_and_pauses(fleet_of):
    fleet = fleet_of(HOSTS)
    first = sync_and_wait(fleet.services, "hello", timeout=60)
    fleet.deploy({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})

    d = rollback(fleet.services, "hello")

    assert (d.trigger, d.origin) == ("rollback", first.id)
    ended = wait_until_ended(fleet.services, "hello", d.id, timeout=60)
    assert ended.status == "success", ended.message
    assert ended.hosts == {"web1": "switched", "web2": "switched"}
    assert all(tree(fleet.target(host)) == FUNCTION_APP for host in HOSTS)
    assert fleet.services.projections.app("hello").paused


def test_the_files_of_an_app_on_hosts_are_read_centrally_from_a_copy_of_its_active_snapshot(fleet_of, tmp_path):
    fleet = fleet_of(["web1"])
    sync_and_wait(fleet.services, "hello", timeout=60)
    export_release(fleet.services, "hello", tmp_path / "first")
    second = fleet.deploy({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})

    export_release(fleet.services, "hello", tmp_path / "second")

    assert tree(tmp_path / "first") == FUNCTION_APP
    assert tree(tmp_path / "second")["HttpHello/__init__.py"] == "def main(req):\n    return 'v2'\n"
    copies = fleet.services.config.data_dir / "readable" / "hello"
    assert sorted(p.name for p in copies.iterdir() if not p.name.startswith(".")) == [second.id, "live"]
