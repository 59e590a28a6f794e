"""The fakes refuse what the providers are known to refuse, so a test passing against them
says something about the real APIs."""
import json

import pytest

from tests.servers.fake_statuses import FakeStatuses

SHA = "4f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"
FAKE = FakeStatuses("http://fake", {"github": "t", "bitbucket": "t", "azure-devops": "t"},
                    {"github": {"o/r"}, "bitbucket": {"o/r"}, "azure-devops": {"c/p/r"}})
GITHUB = (f"/github/repos/o/r/statuses/{SHA}", {"authorization": "Bearer t", "user-agent": "x"})
BITBUCKET = (f"/bitbucket/2.0/repositories/o/r/commit/{SHA}/statuses/build", {"authorization": "Bearer t"})


def answer(route, body: dict, **headers) -> int:
    path, sent = route
    return FAKE.handle(path, {**sent, **headers}, json.dumps(body).encode())[0]


@pytest.mark.parametrize("body,headers,status", [
    ({"state": "success"}, {}, 201),
    ({"state": "success"}, {"authorization": "Bearer wrong"}, 401),
    ({"state": "success"}, {"user-agent": ""}, 422),
    ({"state": "done"}, {}, 422),
    ({"state": "failure", "description": "x" * 141}, {}, 422),
])
def test_the_github_fake_refuses_what_github_refuses(body, headers, status):
    assert answer(GITHUB, body, **headers) == status


@pytest.mark.parametrize("body,status", [
    ({"key": "k", "state": "SUCCESSFUL", "url": "https://x.example/log"}, 201),
    ({"key": "k" * 41, "state": "SUCCESSFUL", "url": "https://x.example/log"}, 400),
    ({"key": "k", "state": "SUCCESSFUL"}, 400),
    ({"key": "k", "state": "success", "url": "https://x.example/log"}, 400),
])
def test_the_bitbucket_fake_refuses_what_bitbucket_refuses(body, status):
    assert answer(BITBUCKET, body) == status


def test_the_azure_devops_fake_wants_the_api_version_and_the_pat_as_basic_password():
    path = f"/azure/c/p/_apis/git/repositories/r/commits/{SHA}/statuses"
    body = json.dumps({"state": "pending", "context": {"name": "n"}}).encode()
    assert FAKE.handle(path + "?api-version=7.1", {"authorization": "Basic OnQ="}, body)[0] == 201
    assert FAKE.handle(path, {"authorization": "Basic OnQ="}, body)[0] == 400
    assert FAKE.handle(path + "?api-version=7.1", {"authorization": "Bearer t"}, body)[0] == 401
