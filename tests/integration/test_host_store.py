"""The store served to host workers (issue 19): a real API (uvicorn on a loopback port) over
the data dir a real worker deploys into, and a second data dir standing for another machine,
which fetches snapshots through /store/... with the worker token and materialises them."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from orchestrator.api import create_app
from orchestrator.core.errors import AuthenticationFailed
from orchestrator.core.projections import DeploymentView
from orchestrator.releases.materialise import Previous, materialise
from orchestrator.releases.remote_store import ContentMismatch, NotServed, RemoteStore, fetch_snapshot
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, GitRepo, git_app
from tests.integration.flow import sync_and_wait, tree
from tests.servers.api_server import serving

WORKER_TOKEN = "worker-token-0123456789"
OPERATOR_TOKEN = "operator-token-0123456789"
# more than one bucket's worth of entries (manifests.py), and a blob of several chunks
APP_FILES = {**FUNCTION_APP, **{f"static/page{n:03}.html": f"<p>page {n}</p>\n" for n in range(600)},
             "static/big.txt": "".join(f"line {n}\n" for n in range(400_000))}


@dataclass
class Server:
    repo: GitRepo
    services: Services
    api: object
    base: str

    def deploy(self, files: dict) -> DeploymentView:
        self.repo.commit(files)
        return sync_and_wait(self.services, "hello")

    def get(self, path: str, token: str | None = WORKER_TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(f"{self.base}{path}", headers=headers, timeout=30)

    def post_blobs(self, ids: list[str], token: str | None = WORKER_TOKEN) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(f"{self.base}/store/blobs", json={"blobs": ids}, headers=headers, timeout=30)

    @property
    def served(self):
        return self.api.state.served_store.served       # type: ignore[attr-defined]

    @property
    def store(self) -> SnapshotStore:
        return SnapshotStore(self.services.config.data_dir / "store")


@pytest.fixture
def server(workspace):
    repo = workspace.repo()
    repo.commit(APP_FILES)
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"), keep_releases=1)},
                                   api={"token": OPERATOR_TOKEN, "worker_token": WORKER_TOKEN})
    sync_and_wait(services, "hello")
    api = create_app(services)
    with serving(services, api) as base:
        yield Server(repo, services, api, base)


def host_store(tmp_path: Path, name: str = "web1") -> SnapshotStore:
    """Another machine's store: a data dir of its own, sharing nothing with the server's."""
    return SnapshotStore(tmp_path / name / "store")


def live_snapshot(services: Services) -> str:
    active = services.projections.app("hello").active
    assert active is not None and active.snapshot
    return active.snapshot


def test_a_snapshot_fetched_into_an_empty_store_materialises_to_the_same_tree(server, workspace, tmp_path):
    store, snapshot = host_store(tmp_path), live_snapshot(server.services)

    fetched = fetch_snapshot(store, RemoteStore(server.base, WORKER_TOKEN), snapshot)

    blobs = {e.sha256 for e in server.store.manifest(snapshot).files.values()}
    assert (fetched.blobs, fetched.present, fetched.bytes) == \
        (len(blobs), 0, sum(os.path.getsize(server.store.blob_path(b)) for b in blobs))
    assert fetched.documents == 1 + len(server.store.bucket_ids(snapshot)) > 2
    assert server.served.blobs == len(blobs)
    release = materialise(store, store.manifest(snapshot), tmp_path / "web1" / "releases" / "hello" / "d1",
                          fresh=fetched.fresh)
    assert tree(release) == tree(workspace.target("hello")) == APP_FILES


def test_a_one_file_change_fetches_exactly_one_blob_and_one_bucket(server, workspace, tmp_path):
    store, remote = host_store(tmp_path), RemoteStore(server.base, WORKER_TOKEN)
    first = live_snapshot(server.services)
    fetch_snapshot(store, remote, first)
    release = materialise(store, store.manifest(first), tmp_path / "web1" / "releases" / "hello" / "d1")
    before = (server.served.manifests, server.served.buckets, server.served.blobs)
    second = server.deploy({"static/page007.html": "<p>page 7, changed</p>\n"}).snapshot
    assert second and second != first

    fetched = fetch_snapshot(store, remote, second)

    assert (fetched.blobs, fetched.present, fetched.documents) == (1, len(store.manifest(first).files) - 1, 2)
    assert (server.served.manifests, server.served.buckets, server.served.blobs) == \
        (before[0] + 1, before[1] + 1, before[2] + 1)
    patched = materialise(store, store.manifest(second), release.with_name("d2"),
                          Previous(store.manifest(first), release), fetched.fresh)
    assert tree(patched) == tree(workspace.target("hello"))
    assert tree(patched)["static/page007.html"] == "<p>page 7, changed</p>\n"


def test_a_corrupted_blob_is_refused_by_its_hash_and_leaves_nothing_in_the_store(server, tmp_path):
    snapshot = live_snapshot(server.services)
    sha = server.store.manifest(snapshot).files["static/big.txt"].sha256
    on_server = server.store.blob_path(sha)
    os.chmod(on_server, 0o644)
    with open(on_server, "r+b") as blob:        # one byte flipped in the middle of the file
        blob.seek(200_000)
        flipped = bytes([blob.read(1)[0] ^ 0x20])
        blob.seek(200_000)
        blob.write(flipped)
    with open(on_server, "rb") as blob:
        sent = hashlib.sha256(blob.read()).hexdigest()
    store = host_store(tmp_path)

    with pytest.raises(ContentMismatch) as refused:
        fetch_snapshot(store, RemoteStore(server.base, WORKER_TOKEN), snapshot)

    assert f"blob {sha}" in str(refused.value) and sent in str(refused.value)
    assert not os.path.exists(store.blob_path(sha))
    assert os.listdir(store.tmp) == []
    assert not (store.manifests / f"{snapshot}.json").exists()      # the snapshot is not whole here


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", OPERATOR_TOKEN])
def test_without_the_worker_token_every_store_route_is_refused(server, token):
    snapshot = live_snapshot(server.services)
    bucket = server.store.bucket_ids(snapshot)[0]
    blob = server.store.manifest(snapshot).files["host.json"].sha256

    answers = [server.get(f"/store/{kind}/{content_id}", token)
               for kind, content_id in (("manifests", snapshot), ("buckets", bucket), ("blobs", blob))]

    answers.append(server.post_blobs([blob], token))

    assert [a.status_code for a in answers] == [401, 401, 401, 401]
    assert all("api.worker_token" in a.json()["error"] for a in answers)
    assert server.get(f"/store/blobs/{blob}").content == b'{"version": "2.0"}'


def test_many_blobs_come_in_one_answer_each_under_a_line_naming_it_and_its_size(server):
    files = server.store.manifest(live_snapshot(server.services)).files
    ids = [files[p].sha256 for p in ("host.json", "static/page001.html", "static/page002.html")]

    answer = server.post_blobs(ids)

    blobs = [server.store.read_blob(sha) for sha in ids]
    assert answer.status_code == 200
    assert answer.content == b"".join(f"{sha} {len(b)}\n".encode() + b for sha, b in zip(ids, blobs))
    assert server.served.blobs == 3


def test_a_batch_naming_one_blob_no_kept_snapshot_holds_is_refused_whole(server):
    held = server.store.manifest(live_snapshot(server.services)).files["host.json"].sha256

    answer = server.post_blobs([held, "0" * 64])

    assert answer.status_code == 404 and answer.json()["error"] == f"no blob {'0' * 64} is served here"
    assert server.post_blobs([held, "../../etc"]).status_code == 400
    assert server.post_blobs([held] * 1001).status_code == 422


def test_a_host_worker_holding_the_operators_token_is_told_its_token_is_refused(server, tmp_path):
    with pytest.raises(AuthenticationFailed, match="refused this host's worker token"):
        fetch_snapshot(host_store(tmp_path), RemoteStore(server.base, OPERATOR_TOKEN),
                       live_snapshot(server.services))


def test_with_no_worker_token_configured_the_store_is_served_to_nobody(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"))},
                                   api={"token": OPERATOR_TOKEN})
    snapshot = sync_and_wait(services, "hello").snapshot
    with serving(services) as base:
        for token in (None, OPERATOR_TOKEN, WORKER_TOKEN):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = requests.get(f"{base}/store/manifests/{snapshot}", headers=headers, timeout=30)

            assert answer.status_code == 403 and "set api.worker_token" in answer.json()["error"]


def test_what_no_kept_snapshot_holds_is_not_served_though_still_on_disk(server, tmp_path):
    """keep_releases 1: after two more deployments the first release is let go; its snapshot
    is no longer kept, though the collection's grace leaves its files on disk a while."""
    first = live_snapshot(server.services)
    only_first = server.store.manifest(first).files["HttpHello/__init__.py"].sha256
    server.deploy({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})
    third = server.deploy({"HttpHello/__init__.py": "def main(req):\n    return 'v3'\n"}).snapshot
    assert os.path.exists(server.store.blob_path(only_first))
    assert (server.store.manifests / f"{first}.json").exists()

    gone = [server.get(f"/store/blobs/{only_first}"), server.get(f"/store/manifests/{first}")]
    unknown = server.get(f"/store/blobs/{'0' * 64}")

    assert [a.status_code for a in gone] == [404, 404] and unknown.status_code == 404
    assert gone[0].json()["error"].replace(only_first, "ID") == unknown.json()["error"].replace("0" * 64, "ID")
    assert server.get(f"/store/manifests/{third}").status_code == 200
    with pytest.raises(NotServed, match=f"does not serve manifest {first}"):
        fetch_snapshot(host_store(tmp_path), RemoteStore(server.base, WORKER_TOKEN), first)


@pytest.mark.parametrize("content_id", ["abc", "0" * 63, "0" * 65, "A" * 64, "g" * 64, "..%2F..%2Fstore",
                                        "%2e%2e", "0" * 62 + "%00"])
def test_an_id_that_is_not_a_sha256_is_refused_before_any_path_is_made_of_it(server, content_id):
    for kind in ("manifests", "buckets", "blobs"):
        answer = server.get(f"/store/{kind}/{content_id}")

        assert answer.status_code in (400, 404), (kind, content_id, answer.status_code)
