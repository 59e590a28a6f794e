"""Mercurial sources end to end: a real `hg serve`, real hg, the session's Redis and Celery
worker."""
from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.config.sources import HgSourceConfig
from orchestrator.core.errors import AuthenticationFailed, RevisionNotFound, TransientError
from orchestrator.releases.snapshots import Base, SnapshotStore
from orchestrator.sources.hg import HgSource
from orchestrator.sources.hg_server import servers
from tests.helpers import FIXTURES, wait_for
from tests.integration.flow import sync_and_wait, tree, wait_until_settled
from tests.process_tree import alive
from tests.servers.hg_serve import HgRepo, hg_serve, hg_serve_with_auth

SITE = {"index.html": "<h1>v1</h1>", "css/site.css": "body {}", "deploy.sh": "#!/bin/sh\n"}
LOCAL = "http://localhost"        # a Host the API answers to (TestClient's own, testserver, is not)


@pytest.fixture
def repo(tmp_path) -> HgRepo:
    return HgRepo(tmp_path / "repo")


@pytest.fixture
def served(repo, tmp_path):
    """(URL, access log) of `repo` served over HTTP."""
    log = tmp_path / "hg-serve.log"
    with hg_serve(repo.path, log) as url:
        yield url, log


def hg_app(url: str, target, **source) -> dict:
    return {"layout": "site", "target": str(target),
            "source": {"type": "hg", "url": url, "poll_interval": "1s", **source}}


def snapshots_built(services, app: str) -> list:
    return [r.event for r in services.store.read(app) if r.event.type == "SnapshotBuilt"]


# Every process this one starts, while a test records them (an audit hook stays for good).
_started: list[list[str]] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "subprocess.Popen" and _started is not None:
        _started.append([os.fsdecode(arg) for arg in args[1]])


sys.addaudithook(_audit)


@contextmanager
def hg_started() -> Iterator[list[str]]:
    """The hg subcommands of the hg processes started within: `serve` for a command server."""
    global _started
    _started, found = [], []
    try:
        yield found
    finally:
        found += [argv[1] for argv in _started if Path(argv[0]).name == "hg"]
        _started = None


def snapshot(source: HgSource, store: SnapshotStore, revision: str, live: Base | None = None):
    writer = store.builder(live)
    source.fetch(revision, writer)
    return writer.seal()


def test_the_head_check_over_http_is_one_wire_protocol_lookup(repo, served, tmp_path):
    url, log = served
    node = repo.commit(SITE)
    source = HgSource(HgSourceConfig(type="hg", url=url), tmp_path / "cache")
    before = log.read_text()

    assert source.head() == node
    assert source.latest(node) is None and source.latest(None).revision == node

    # An `hg` client would ask for the capabilities first; the in-process check does not.
    requests = log.read_text()[len(before):]
    assert "cmd=lookup" in requests and "cmd=capabilities" not in requests


def test_a_missing_branch_over_http_is_named_in_revision_not_found(repo, served, tmp_path):
    url, _ = served
    repo.commit(SITE)
    source = HgSource(HgSourceConfig(type="hg", url=url, branch="nope"), tmp_path / "cache")

    with pytest.raises(RevisionNotFound, match=f"branch 'nope' not found in {url}"):
        source.head()


def test_credentials_never_reach_the_error_messages(repo, served, tmp_path):
    url, _ = served
    repo.commit(SITE)
    secret = url.replace("http://", "http://deployer:s3cret@")
    source = HgSource(HgSourceConfig(type="hg", url=secret, branch="nope", password="tok3n"),
                      tmp_path / "cache")

    with pytest.raises(RevisionNotFound) as raised:
        source.head()

    assert "s3cret" not in str(raised.value) and "tok3n" not in str(raised.value)


def test_first_deployment_over_http_holds_the_commit(workspace, repo, served):
    url, _ = served
    repo.commit({**SITE, "latest.html": "see index"})
    os.symlink("index.html", repo.path / "home.html")
    os.chmod(repo.path / "deploy.sh", 0o755)
    node = repo.commit({}, "link and executable")
    services = workspace.configure({"site": hg_app(url, workspace.target("site"))})

    d = sync_and_wait(services, "site")

    assert (d.status, d.revision) == ("success", node)
    live = workspace.target("site").resolve()
    assert tree(live) == {**SITE, "latest.html": "see index", "home.html": SITE["index.html"]}
    assert os.readlink(live / "home.html") == "index.html"
    assert os.access(live / "deploy.sh", os.X_OK) and not os.access(live / "index.html", os.X_OK)
    assert not snapshots_built(services, "site")[0].incremental


def test_a_one_file_commit_deploys_incrementally(workspace, repo, served):
    url, _ = served
    repo.commit({**SITE, **{f"static/{i}.txt": f"file {i}" for i in range(20)}})
    services = workspace.configure({"site": hg_app(url, workspace.target("site"))})
    sync_and_wait(services, "site")
    repo.commit({"static/7.txt": "changed", "static/8.txt": None})

    d = sync_and_wait(services, "site")

    built = snapshots_built(services, "site")[-1]
    assert d.status == "success" and d.revision == repo.head()
    assert built.incremental and (built.blobs_added, built.blobs_reused) == (1, 0)
    live = tree(workspace.target("site"))
    assert len(live) == 22 and live["static/7.txt"] == "changed" and "static/8.txt" not in live


def test_a_changed_funcignore_lists_every_file_again(workspace, repo, served):
    url, _ = served
    repo.commit({**SITE, ".funcignore": "*.md\n", "a.md": "doc"})
    services = workspace.configure({"site": hg_app(url, workspace.target("site"))})
    sync_and_wait(services, "site")
    repo.commit({".funcignore": "*.txt\n"})

    sync_and_wait(services, "site")

    assert not snapshots_built(services, "site")[-1].incremental
    assert tree(workspace.target("site"))["a.md"] == "doc"


def test_a_named_branch_other_than_default_is_tracked(workspace, repo, served):
    url, _ = served
    repo.commit({**SITE, "env.txt": "production"})
    repo.branch("staging")
    staging = repo.commit({"env.txt": "staging"})
    repo.update("default")
    repo.commit({"env.txt": "production 2"})
    services = workspace.configure({
        "prod": hg_app(url, workspace.target("prod")),
        "staging": hg_app(url, workspace.target("staging"), branch="staging")})

    assert sync_and_wait(services, "staging").revision == staging
    sync_and_wait(services, "prod")

    assert (workspace.target("staging") / "env.txt").read_text() == "staging"
    assert (workspace.target("prod") / "env.txt").read_text() == "production 2"


def test_a_path_subfolder_deploys_only_that_folder(workspace, repo, served):
    url, _ = served
    repo.commit({"README.md": "monorepo", "web/index.html": "<p>", "web/css/a.css": "a{}",
                 "api/host.json": "{}"})
    services = workspace.configure({"web": hg_app(url, workspace.target("web"), path="web")})
    sync_and_wait(services, "web")
    repo.commit({"web/index.html": "<p>2", "api/host.json": '{"v": 2}'})

    d = sync_and_wait(services, "web")

    assert d.status == "success"
    assert tree(workspace.target("web")) == {"index.html": "<p>2", "css/a.css": "a{}"}
    assert snapshots_built(services, "web")[-1].blobs_added == 1


def test_a_missing_subfolder_fails_the_deployment_naming_it(workspace, repo, served):
    url, _ = served
    repo.commit(SITE)
    services = workspace.configure({"web": hg_app(url, workspace.target("web"), path="nope")})

    d = sync_and_wait(services, "web")

    assert d.status == "failed" and "folder 'nope' does not exist" in d.message


def test_a_local_repository_deploys_without_a_server(workspace, repo):
    node = repo.commit(SITE)
    services = workspace.configure({"site": hg_app(str(repo.path), workspace.target("site"))})

    d = sync_and_wait(services, "site")

    assert (d.status, d.revision) == ("success", node)
    assert tree(workspace.target("site")) == SITE
    with pytest.raises(RevisionNotFound, match="branch 'nope'"):
        HgSource(HgSourceConfig(type="hg", url=str(repo.path), branch="nope"),
                 workspace.data_dir / "cache").head()


def test_a_bitbucket_mercurial_push_webhook_deploys_from_hg_serve(workspace, repo, served):
    import hashlib
    import hmac
    import json

    from fastapi.testclient import TestClient

    from orchestrator.api import create_app
    repo.commit({"index.html": "<p>from hg</p>"})
    url, _ = served
    services = workspace.configure({"bb": {"layout": "site", "target": str(workspace.target("bb")),
                                           "source": {"type": "bitbucket", "scm": "hg", "url": url,
                                                      "secret": "bitbucket-hook-secret", "poll_interval": 0}}})
    payload = json.loads((FIXTURES / "bitbucket/repo-push.json").read_bytes())
    payload["repository"]["scm"] = "hg"
    payload["push"]["changes"][0]["new"].update(name="default", target={"hash": repo.head()})
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(b"bitbucket-hook-secret", body, hashlib.sha256).hexdigest()

    response = TestClient(create_app(services), base_url=LOCAL).post("/hooks/bitbucket/bb", content=body, headers={
        "X-Event-Key": "repo:push", "X-Request-UUID": "hg-1", "X-Hub-Signature": signature})

    assert response.status_code == 202 and response.json()["pushed"] == repo.head()
    d = wait_until_settled(services, "bb").active
    assert (d.status, d.trigger, d.revision) == ("success", "webhook", repo.head())
    assert (workspace.target("bb") / "index.html").read_text() == "<p>from hg</p>"


def test_a_private_repository_is_reached_with_credentials_that_never_reach_events(workspace, repo, tmp_path):
    node = repo.commit(SITE)
    with hg_serve_with_auth(repo.path, tmp_path / "hgweb.log", ("deployer", "s3cret-tok3n")) as url:
        for wrong in ({}, {"username": "deployer", "password": "wrong"}):
            with pytest.raises(AuthenticationFailed):
                HgSource(HgSourceConfig(type="hg", url=url, **wrong), tmp_path / "cache").head()
        services = workspace.configure({"site": hg_app(
            url, workspace.target("site"), username="deployer", password="s3cret-tok3n")})
        d = sync_and_wait(services, "site")
    assert d.status == "success" and tree(workspace.target("site")) == SITE
    recorded = json.dumps([r.event.to_fields() for r in services.store.read("site")])
    assert node in recorded and "s3cret-tok3n" not in recorded


def test_a_one_file_change_is_snapshotted_without_starting_an_hg_process(repo, served, tmp_path):
    url, _ = served
    first = repo.commit(SITE)
    source = HgSource(HgSourceConfig(type="hg", url=url), tmp_path / "cache")
    store = SnapshotStore(tmp_path / "store")
    with hg_started() as cold:
        live = Base(first, snapshot(source, store, first).manifest)
    change = repo.commit({"index.html": "<h1>v2</h1>"})

    with hg_started() as warm:
        built = snapshot(source, store, change, live)

    assert built.incremental and built.manifest == snapshot(source, SnapshotStore(tmp_path / "full"), change).manifest
    assert cold == ["clone", "serve"]       # the clone, then its command server
    assert warm == []                       # pull, log, status, manifest and cat: requests to it


def test_a_killed_command_server_is_replaced_at_the_next_snapshot(repo, served, tmp_path):
    url, _ = served
    first = repo.commit(SITE)
    source = HgSource(HgSourceConfig(type="hg", url=url), tmp_path / "cache")
    store = SnapshotStore(tmp_path / "store")
    before = set(servers.pids())
    live = Base(first, snapshot(source, store, first).manifest)
    [killed] = set(servers.pids()) - before
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not alive(killed), what="the command server to die")
    change = repo.commit({"index.html": "<h1>v2</h1>"})

    with hg_started() as replaced:
        built = snapshot(source, store, change, live)

    assert built.incremental and built.manifest == snapshot(source, SnapshotStore(tmp_path / "full"), change).manifest
    assert replaced == ["serve"] and killed not in servers.pids()


def test_an_unknown_revision_and_a_repository_gone_keep_their_errors(repo, served, tmp_path):
    url, _ = served
    repo.commit(SITE)
    source = HgSource(HgSourceConfig(type="hg", url=url), tmp_path / "cache")
    store = SnapshotStore(tmp_path / "store")
    with pytest.raises(RevisionNotFound, match=f"revision {'ab' * 20} not found in {url}"):
        snapshot(source, store, "ab" * 20)
    gone = HgSource(HgSourceConfig(type="hg", url=url + "nope"), tmp_path / "cache")

    with pytest.raises(TransientError, match=f"hg clone {url}nope failed: abort: HTTP Error 404"):
        snapshot(gone, store, "ab" * 20)


def test_a_pull_with_credentials_changed_to_wrong_ones_is_an_authentication_failure(repo, tmp_path):
    first = repo.commit(SITE)
    with hg_serve_with_auth(repo.path, tmp_path / "hgweb.log", ("deployer", "s3cret-tok3n")) as url:
        right = HgSource(HgSourceConfig(type="hg", url=url, username="deployer", password="s3cret-tok3n"),
                         tmp_path / "cache")
        snapshot(right, SnapshotStore(tmp_path / "store"), first)
        change = repo.commit({"index.html": "<h1>v2</h1>"})
        wrong = HgSource(HgSourceConfig(type="hg", url=url, username="deployer", password="wrong"),
                         tmp_path / "cache")       # the same clone, another server

        with pytest.raises(AuthenticationFailed, match="hg pull .* failed") as raised:
            snapshot(wrong, SnapshotStore(tmp_path / "store"), change)
        assert "wrong" not in str(raised.value)
        assert snapshot(right, SnapshotStore(tmp_path / "store"), change).manifest


def test_the_history_records_the_changesets_author_and_description(workspace, repo, served):
    url, _ = served
    repo.commit({"index.html": "v2"}, "Publish v2")
    services = workspace.configure({"site": hg_app(url, workspace.target("site"))})

    d = sync_and_wait(services, "site")

    assert (d.author, d.commit_message) == ("test", "Publish v2")
