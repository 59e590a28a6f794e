import base64
import json

import pytest

from orchestrator.config.notify import AzureDevOpsChannel, BitbucketChannel, GitHubChannel
from orchestrator.config.settings import SluiceConfig
from orchestrator.core import events as ev
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.notifying.commit_statuses import bitbucket_key, status_request
from orchestrator.notifying.messages import Notification, wanted
from orchestrator.notifying.render import request_for

SHA = "4f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"
LOG = "https://sluice.example.com/api/deployments/20260101-1/log?app=hello"
GITHUB = GitHubChannel(type="github", token="ghp_secret", api_url="https://gh.example.com/api/v3/")
BITBUCKET = BitbucketChannel(type="bitbucket", token="bb_secret")
AZURE = AzureDevOpsChannel(type="azure-devops", token="pat_secret")


def config(url: str = "https://github.com/octo/hello.git", **apps) -> SluiceConfig:
    return SluiceConfig.model_validate({"public_url": "https://sluice.example.com", "apps": {
        "hello": {"target": "/srv/hello", "source": {"type": "git", "url": url}}, **apps}})


def note(event: ev.Event, log_url: str | None = LOG, **deployment) -> Notification:
    d = DeploymentView(**{"id": "20260101-1", "revision": SHA, "trigger": "poll", "received_at": 0.0,
                          "started_at": 1.0, **deployment})
    return Notification("1700000000000-0", "hello", event, d, log_url)


STARTED = ev.DeploymentStarted(app="hello", at=1.0, deployment_id="20260101-1", worker="w1")
SUCCEEDED = ev.DeploymentSucceeded(app="hello", at=2.0, deployment_id="20260101-1", snapshot="s", release="r")
FAILED = ev.DeploymentFailed(app="hello", at=2.0, deployment_id="20260101-1", reason="host.json is missing")


def request(channel, event=STARTED, cfg=None, **more):
    return status_request(channel, note(event, **more), "1700000000000-0:0", AppView("hello"),
                          cfg or config())


def test_github_gets_the_commit_status_of_the_deployment_with_its_log_and_context():
    r = request(GITHUB, FAILED)
    assert (r.method, r.url) == ("POST", f"https://gh.example.com/api/v3/repos/octo/hello/statuses/{SHA}")
    assert json.loads(r.body) == {"state": "failure", "target_url": LOG, "context": "sluice/hello",
                                  "description": "Deployment 20260101-1 failed: host.json is missing"}
    assert r.headers["Authorization"] == "Bearer ghp_secret"
    assert r.headers["Accept"] == "application/vnd.github+json"
    assert r.headers["X-Sluice-Delivery"] == "1700000000000-0:0"


@pytest.mark.parametrize("event,state", [(STARTED, "pending"), (SUCCEEDED, "success"), (FAILED, "failure")])
def test_each_provider_says_the_state_in_its_own_words(event, state):
    bitbucket = {"pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED"}[state]
    azure = {"pending": "pending", "success": "succeeded", "failure": "failed"}[state]
    assert json.loads(request(GITHUB, event).body)["state"] == state
    assert json.loads(request(BITBUCKET, event, config("https://bitbucket.org/team/site.git")).body)[
        "state"] == bitbucket
    assert json.loads(request(AZURE, event, config("https://dev.azure.com/contoso/web/_git/front")).body)[
        "state"] == azure


def test_bitbucket_gets_a_build_status_keyed_by_the_context():
    r = request(BITBUCKET, SUCCEEDED, config("git@bitbucket.org:team/site.git"))
    assert r.url == f"https://api.bitbucket.org/2.0/repositories/team/site/commit/{SHA}/statuses/build"
    assert json.loads(r.body) == {"key": "sluice/hello", "state": "SUCCESSFUL", "name": "sluice/hello",
                                  "url": LOG, "description": "Deployment 20260101-1 succeeded"}
    assert r.headers["Authorization"] == "Bearer bb_secret"


def test_a_bitbucket_user_and_password_go_as_basic_auth():
    channel = BitbucketChannel(type="bitbucket", token="jo:app-password")
    r = request(channel, cfg=config("https://bitbucket.org/team/site.git"))
    assert r.headers["Authorization"] == "Basic " + base64.b64encode(b"jo:app-password").decode()


def test_a_long_context_still_makes_a_bitbucket_key_of_40_characters_and_distinct():
    a, b = bitbucket_key("sluice/" + "a" * 50 + "-one"), bitbucket_key("sluice/" + "a" * 50 + "-two")
    assert len(a) == len(b) == 40 and a != b


def test_azure_devops_gets_a_git_commit_status_with_the_pat_as_basic_auth():
    r = request(AZURE, STARTED, config("https://dev.azure.com/contoso/Web%20Site/_git/front"))
    assert r.url == ("https://dev.azure.com/contoso/Web%20Site/_apis/git/repositories/front/commits/"
                     f"{SHA}/statuses?api-version=7.1")
    assert json.loads(r.body) == {"state": "pending", "description": "Deployment 20260101-1 started",
                                  "targetUrl": LOG, "context": {"name": "hello", "genre": "sluice"}}
    assert r.headers["Authorization"] == "Basic " + base64.b64encode(b":pat_secret").decode()


def test_without_a_public_url_the_link_is_left_out():
    assert "target_url" not in json.loads(request(GITHUB, log_url=None).body)
    body = json.loads(request(AZURE, cfg=config("https://dev.azure.com/c/w/_git/f"), log_url=None).body)
    assert "targetUrl" not in body


def test_a_channels_repository_and_context_win():
    channel = GitHubChannel(type="github", token="t", repository="mine/fork", context="deploy/prod")
    r = request(channel)
    assert r.url == f"https://api.github.com/repos/mine/fork/statuses/{SHA}"
    assert json.loads(r.body)["context"] == "deploy/prod"


def test_a_description_longer_than_github_takes_is_cut():
    failed = ev.DeploymentFailed(app="hello", at=2.0, deployment_id="20260101-1", reason="x" * 300)
    description = json.loads(request(GITHUB, failed).body)["description"]
    assert len(description) == 140 and description.endswith("…")


@pytest.mark.parametrize("deployment", [
    {"trigger": "zipdeploy", "revision": "a" * 64, "preset_snapshot": "a" * 64},
    {"trigger": "import"},
    {"trigger": "redeploy", "revision": "b" * 64, "preset_snapshot": "b" * 64},   # a zip, again
    {"trigger": "promote", "origin": "other/20251231-9"},
    {"revision": "not-a-commit"}])
def test_revisions_that_are_no_commits_of_the_repository_get_no_status(deployment):
    cfg = config(other={"target": "/srv/other", "source": {"type": "git", "url": "https://github.com/octo/other"}})
    assert request(GITHUB, cfg=cfg, **deployment) is None


def test_a_promotion_from_an_app_on_the_same_repository_marks_the_commit():
    cfg = config(staging={"target": "/srv/staging",
                          "source": {"type": "git", "url": "git@github.com:octo/hello.git", "branch": "main"}})
    assert request(GITHUB, cfg=cfg, trigger="promote", origin="staging/20251231-9") is not None


def test_a_deployment_superseded_before_it_started_leaves_its_commit_alone():
    superseded = ev.DeploymentSuperseded(app="hello", at=2.0, deployment_id="20260101-1", by="20260101-2")
    assert request(GITHUB, superseded, started_at=None) is None
    assert json.loads(request(GITHUB, superseded).body)["state"] == "error"


def test_an_app_whose_source_names_no_repository_gets_no_status_from_a_top_level_channel():
    assert request(GITHUB, cfg=config("https://git.example.com/octo/hello.git")) is None


def test_the_notifier_renders_status_channels_through_request_for():
    r = request_for(GITHUB, note(STARTED), "d:0", AppView("hello"), config())
    assert r is not None and r.url.endswith(f"/statuses/{SHA}")


@pytest.mark.parametrize("event", ["DeploymentStarted", "DeploymentSkipped", "DeploymentSuperseded"])
def test_commit_statuses_follow_every_started_deployment_to_its_end(event):
    assert wanted("github", ["DeploymentSucceeded"], event)
    assert not wanted("webhook", ["DeploymentSucceeded"], event)
