"""Git over smart HTTP: in-process head checks and deployments against a real
`git http-backend`, public and behind HTTP Basic auth."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrator.api import create_app
from orchestrator.config.sources import GitSourceConfig
from orchestrator.core.errors import AuthenticationFailed, RevisionNotFound
from orchestrator.sources.git import GitSource
from tests.helpers import FIXTURES, FUNCTION_APP, git
from tests.integration.flow import sync_and_wait, tree, wait_until_ended, wait_until_settled
from tests.servers.git_http import GitHttpServer

V2 = {"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"}
LOCAL = "http://localhost"        # a Host the API answers to (TestClient's own, testserver, is not)


@pytest.fixture
def served(workspace):
    """A bare repository under a served folder, and a working clone to commit from."""
    root = workspace.root / "served"
    git(workspace.root, "init", "--quiet", "--bare", str(root / "app.git"))
    work = workspace.repo("work")
    work.commit(FUNCTION_APP)
    git(work.path, "push", "--quiet", str(root / "app.git"), "HEAD:master")

    def push(files):
        work.commit(files)
        git(work.path, "push", "--quiet", str(root / "app.git"), "HEAD:master")
        return work.head()
    return root, work, push


def source(url: str, **extra) -> GitSource:
    """For head checks only: they never touch the mirror cache."""
    return GitSource(GitSourceConfig(type="git", url=url, **extra), Path("/nonexistent"))


@pytest.mark.parametrize("v2", [True, False], ids=["protocol-v2", "protocol-v0"])
def test_the_head_check_reads_the_branch_head_over_http_in_process(served, v2):
    root, work, _ = served
    with GitHttpServer(root, v2=v2) as server:
        head = source(f"{server.url}/app.git").head()
        before = server.requests
        source(f"{server.url}/app.git").head()
        per_check = server.requests - before
        with pytest.raises(RevisionNotFound, match="branch 'nope'"):
            source(f"{server.url}/app.git", branch="nope").head()
    assert head == work.head()
    assert per_check == 1        # once a server is known, one request per check, v2 or v0


def test_an_app_on_an_http_repository_deploys_and_follows_pushes(served, workspace):
    root, _, push = served
    with GitHttpServer(root) as server:
        services = workspace.configure({"hello": {
            "target": str(workspace.target("hello")),
            "source": {"type": "git", "url": f"{server.url}/app.git", "poll_interval": "1s"}}})
        assert sync_and_wait(services, "hello").status == "success"
        push(V2)
        assert sync_and_wait(services, "hello").status == "success"
    assert tree(workspace.target("hello"))["HttpHello/__init__.py"].endswith("'v2'\n")


def test_a_private_repository_is_reached_with_credentials_that_never_reach_events(served, workspace):
    root, _, _ = served
    with GitHttpServer(root, auth=("deploy", "s3cret-token")) as server:
        url = f"{server.url}/app.git"
        with pytest.raises(AuthenticationFailed):
            source(url).head()
        with pytest.raises(AuthenticationFailed):
            source(url, username="deploy", password="wrong").head()
        services = workspace.configure({"hello": {
            "target": str(workspace.target("hello")),
            "source": {"type": "git", "url": url, "username": "deploy", "password": "s3cret-token"}}})
        d = sync_and_wait(services, "hello")
    assert d.status == "success" and tree(workspace.target("hello")) == FUNCTION_APP
    recorded = json.dumps([r.event.to_fields() for r in services.store.read("hello")])
    assert "s3cret-token" not in recorded


def test_a_fetch_with_a_refused_password_fails_at_once_naming_the_cause(served, workspace):
    root, work, _ = served
    with GitHttpServer(root, auth=("deploy", "right")) as server:
        from orchestrator.deploying.dispatch import request_deployment
        services = workspace.configure({"hello": {
            "target": str(workspace.target("hello")),
            "source": {"type": "git", "url": f"{server.url}/app.git", "username": "deploy",
                       "password": "wrong"}}})
        queued = request_deployment(services, "hello", work.head(), "manual")
        d = wait_until_ended(services, "hello", queued.deployment_id)
    assert d.status == "failed" and d.attempts == 1 and "Authentication failed" in d.message
    assert "wrong" not in d.message


def test_a_private_azure_devops_repository_deploys_the_pushed_commit_on_its_service_hook(served, workspace):
    """Azure DevOps: the hook authenticates with Basic auth, the fetch with a personal access
    token as the password; neither secret reaches the events."""
    root, _, push = served
    revision = push(V2)
    hook = json.loads((FIXTURES / "azure-devops/git.push.json").read_bytes())
    hook["resource"]["refUpdates"][0]["newObjectId"] = revision
    with GitHttpServer(root, auth=("build", "pat-s3cret")) as server:
        services = workspace.configure({"ado": {
            "target": str(workspace.target("ado")),
            "source": {"type": "azure-devops", "url": f"{server.url}/app.git", "poll_interval": 0,
                       "username": "build", "password": "pat-s3cret",
                       "basic_auth": {"username": "hook", "password": "hook-s3cret-for-tests"}}}})
        answer = TestClient(create_app(services), base_url=LOCAL).post(
            "/hooks/azure-devops/ado", json=hook,
            headers={"Authorization": "Basic " + base64.b64encode(b"hook:hook-s3cret-for-tests").decode()})
        assert (answer.status_code, answer.json()["pushed"]) == (202, revision)
        d = wait_until_settled(services, "ado").active
    assert (d.status, d.trigger, d.revision) == ("success", "webhook", revision)
    assert tree(workspace.target("ado"))["HttpHello/__init__.py"].endswith("'v2'\n")
    recorded = json.dumps([r.event.to_fields() for r in services.store.read("ado")])
    assert "pat-s3cret" not in recorded and "hook-s3cret" not in recorded
