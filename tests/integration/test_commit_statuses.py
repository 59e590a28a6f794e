"""Commit statuses end to end: a real worker deploys, a real Notifier reads the feed, and
local fakes of GitHub's, Bitbucket's and Azure DevOps' status APIs take the requests."""
from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from orchestrator.core import events as ev
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import sync_and_wait
from tests.integration.notifier_thread import notifier_running
from tests.servers.fake_statuses import FakeStatuses, fake_statuses

PUBLIC_URL = "https://sluice.example.com"
TOKENS = {"github": "ghp_fake0123456789", "bitbucket": "bb_fake0123456789", "azure-devops": "pat0123456789"}
REPOSITORIES = {"github": {"octo/hello"}, "bitbucket": {"team/hello"},
                "azure-devops": {"contoso/web/hello"}}


@pytest.fixture
def apis() -> Iterator[FakeStatuses]:
    with fake_statuses(TOKENS, REPOSITORIES) as fake:
        yield fake


def channels(fake: FakeStatuses) -> list[dict]:
    return [{"type": "github", "token": TOKENS["github"], "repository": "octo/hello",
             "api_url": fake.api_url("github")},
            {"type": "bitbucket", "token": TOKENS["bitbucket"], "repository": "team/hello",
             "api_url": fake.api_url("bitbucket")},
            {"type": "azure-devops", "token": TOKENS["azure-devops"], "repository": "web/hello",
             "organization": "contoso", "api_url": fake.api_url("azure-devops")}]


def deploy(workspace, fake, files):
    repo = workspace.repo()
    repo.commit(files)
    app = {**git_app(repo, workspace.target("hello")), "notify": channels(fake)}
    services = workspace.configure({"hello": app}, public_url=PUBLIC_URL)
    return repo, services


def statuses_of(fake: FakeStatuses, sha: str, count: int) -> dict[str, list[str]]:
    every = ("github", "bitbucket", "azure-devops")
    wait_for(lambda: all(len(fake.states(p, sha)) >= count for p in every), 30,
             what=f"{count} statuses of {sha} at each API (got {fake.statuses})")
    return {p: fake.states(p, sha) for p in every}


def test_a_good_deployment_marks_its_commit_pending_then_successful_at_each_provider(workspace, apis):
    repo, services = deploy(workspace, apis, FUNCTION_APP)
    with notifier_running(services):
        d = sync_and_wait(services, "hello")
        states = statuses_of(apis, repo.head(), 2)
    assert d.status == "success"
    assert states == {"github": ["pending", "success"], "bitbucket": ["INPROGRESS", "SUCCESSFUL"],
                      "azure-devops": ["pending", "succeeded"]}
    log = f"{PUBLIC_URL}/api/deployments/{d.id}/log?app=hello"
    sha = repo.head()
    github, bitbucket, azure = ([r for r in apis.requests if r.provider == p][-1]
                                for p in ("github", "bitbucket", "azure-devops"))
    assert github.path == f"/github/repos/octo/hello/statuses/{sha}"
    assert github.headers["authorization"] == f"Bearer {TOKENS['github']}"
    assert github.headers["accept"] == "application/vnd.github+json"
    assert github.json() == {"state": "success", "target_url": log, "context": "sluice/hello",
                             "description": f"Deployment {d.id} succeeded"}
    assert bitbucket.path == f"/bitbucket/2.0/repositories/team/hello/commit/{sha}/statuses/build"
    assert bitbucket.headers["authorization"] == f"Bearer {TOKENS['bitbucket']}"
    assert bitbucket.json() == {"key": "sluice/hello", "state": "SUCCESSFUL", "name": "sluice/hello",
                                "url": log, "description": f"Deployment {d.id} succeeded"}
    assert azure.path == (f"/azure/contoso/web/_apis/git/repositories/hello/commits/{sha}/statuses"
                          "?api-version=7.1")
    assert azure.headers["authorization"] == "Basic " + base64.b64encode(
        f":{TOKENS['azure-devops']}".encode()).decode()
    assert azure.json() == {"state": "succeeded", "description": f"Deployment {d.id} succeeded",
                            "targetUrl": log, "context": {"name": "hello", "genre": "sluice"}}
    assert github.headers["x-sluice-delivery"].endswith(":0")       # the app's first channel
    assert azure.headers["x-sluice-delivery"] == github.headers["x-sluice-delivery"][:-1] + "2"


def test_a_failing_deployment_marks_its_commit_pending_then_failed_with_the_reason(workspace, apis):
    repo, services = deploy(workspace, apis, FUNCTION_APP)
    with notifier_running(services):
        sync_and_wait(services, "hello")
        repo.commit({"host.json": None})        # no longer a function app: refused as it is
        d = sync_and_wait(services, "hello")
        states = statuses_of(apis, repo.head(), 2)
        delivered = wait_for(lambda: len(recorded(services, ev.NotificationDelivered)) >= 12 and
                             recorded(services, ev.NotificationDelivered), 30,
                             what="12 deliveries recorded on the app's stream")
    assert d.status == "failed"
    assert states == {"github": ["pending", "failure"], "bitbucket": ["INPROGRESS", "FAILED"],
                      "azure-devops": ["pending", "failed"]}
    github = [s for s in apis.statuses if s.provider == "github" and s.sha == repo.head()][-1]
    assert github.body["description"].startswith(f"Deployment {d.id} failed: ")
    assert "host.json" in github.body["description"] and len(github.body["description"]) <= 140
    assert {e.status for e in delivered} == {201} and not recorded(services, ev.NotificationFailed)


def recorded(services: Services, kind: type) -> list:
    return [r.event for r in services.store.read("hello") if isinstance(r.event, kind)]
