"""Webhook receivers: real FastAPI app, real Redis, real worker, real git repositories."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from orchestrator.api import create_app
from tests.helpers import FIXTURES, FUNCTION_APP
from tests.integration.flow import event_types, wait_until_settled

SECRET = "test-webhook-secret"


def github_push(ref: str, after: str) -> bytes:
    doc = json.loads((FIXTURES / "github/push_with-new-branch.payload.json").read_bytes())
    doc.update(ref=ref, after=after, deleted=after == "0" * 40)
    return json.dumps(doc).encode()


def signed(body: bytes, event: str = "push", delivery: str = "d-1", **headers) -> dict:
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig,
            "Content-Type": "application/json", **headers}


@pytest.fixture
def hooked(workspace):
    """A github-type app on a local repository, and a client for the API."""
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({"hello": {
        "target": str(workspace.target("hello")),
        "source": {"type": "github", "url": str(repo.path), "branch": "master", "secret": SECRET}}})
    return repo, services, TestClient(create_app(services), base_url="http://localhost")


def test_a_signed_push_to_the_tracked_branch_is_accepted_at_once_and_the_branch_head_goes_live(
        hooked, workspace):
    repo, services, client = hooked
    body = github_push("refs/heads/master", repo.head())

    response = client.post("/hooks/github/hello", content=body, headers=signed(body))

    assert response.status_code == 202 and response.json()["status"] == "accepted"
    d = wait_until_settled(services, "hello").active
    assert (d.status, d.trigger, d.revision) == ("success", "webhook", repo.head())
    assert (workspace.target("hello") / "host.json").exists()


def test_a_replayed_push_with_a_new_delivery_id_puts_nothing_older_than_live_live(hooked, workspace):
    repo, services, client = hooked
    old = github_push("refs/heads/master", repo.head())
    client.post("/hooks/github/hello", content=old, headers=signed(old, delivery="d-old"))
    wait_until_settled(services, "hello")
    fix = repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'fixed'\n"})
    body = github_push("refs/heads/master", fix)
    client.post("/hooks/github/hello", content=body, headers=signed(body, delivery="d-fix"))
    wait_until_settled(services, "hello")

    replay = client.post("/hooks/github/hello", content=old, headers=signed(old, delivery="d-new"))

    assert replay.status_code == 202 and replay.json()["status"] == "accepted"
    view = wait_until_settled(services, "hello")
    assert view.active.revision == fix and len(view.deployments) == 2
    assert "fixed" in (workspace.target("hello") / "HttpHello/__init__.py").read_text()


def test_two_hundred_distinct_pushes_arriving_out_of_order_end_with_the_branch_head_live(hooked):
    repo, services, client = hooked
    rng = random.Random(12)

    def deliver(n: int, revision: str) -> None:
        time.sleep(rng.uniform(0, 0.2))         # deliveries overtake one another
        body = github_push("refs/heads/master", revision)
        response = client.post("/hooks/github/hello", content=body, headers=signed(body, delivery=f"p{n}"))
        assert response.status_code == 202, response.text

    late = {173: "", 183: ""}                   # held up somewhere: they arrive after all others
    with ThreadPoolExecutor(16) as pool:
        sent = []
        for n in range(200):
            revision = repo.commit({"version.txt": str(n)})
            if n in late:
                late[n] = revision
            else:
                sent.append(pool.submit(deliver, n, revision))
        for future in sent:
            future.result()
        for future in [pool.submit(deliver, n, revision) for n, revision in late.items()]:
            future.result()
    head = repo.head()

    assert wait_until_settled(services, "hello", 60).active.revision == head


def test_a_redelivery_creates_no_second_deployment(hooked):
    repo, services, client = hooked
    body = github_push("refs/heads/master", repo.head())
    client.post("/hooks/github/hello", content=body, headers=signed(body, delivery="same"))
    wait_until_settled(services, "hello")

    again = client.post("/hooks/github/hello", content=body, headers=signed(body, delivery="same"))

    assert again.status_code == 202 and again.json()["status"] == "duplicate"
    assert event_types(services, "hello").count("DeploymentQueued") == 1


def test_a_form_encoded_delivery_is_accepted(hooked):
    repo, services, client = hooked
    body = urlencode({"payload": github_push("refs/heads/master", repo.head()).decode()}).encode()
    headers = signed(body, **{"Content-Type": "application/x-www-form-urlencoded"})
    assert client.post("/hooks/github/hello", content=body, headers=headers).json()["status"] == "accepted"
    assert wait_until_settled(services, "hello").active.status == "success"


def test_a_ping_answers_200_and_deploys_nothing(hooked):
    _, services, client = hooked
    body = (FIXTURES / "github/ping_payload.json").read_bytes()
    response = client.post("/hooks/github/hello", content=body, headers=signed(body, event="ping"))
    assert response.status_code == 200 and services.store.read("hello") == []


@pytest.mark.parametrize("ref,after,why", [
    ("refs/heads/feature", "a" * 40, "not to the tracked branch"),
    ("refs/tags/v1", "a" * 40, "tag 'v1'"),
    ("refs/heads/master", "0" * 40, "was deleted"),
])
def test_pushes_that_do_not_move_the_tracked_branch_are_ignored_with_the_reason(hooked, ref, after, why):
    _, services, client = hooked
    body = github_push(ref, after)
    response = client.post("/hooks/github/hello", content=body, headers=signed(body))
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    assert why in response.json()["reason"] and services.store.read("hello") == []


@pytest.mark.parametrize("headers", [{}, {"X-Hub-Signature-256": "sha256=" + "0" * 64},
                                     {"X-Hub-Signature-256": "garbage"}])
def test_a_bad_or_missing_signature_is_401_and_records_nothing(hooked, headers):
    repo, services, client = hooked
    body = github_push("refs/heads/master", repo.head())
    response = client.post("/hooks/github/hello", content=body,
                           headers={"X-GitHub-Event": "push", **headers})
    assert response.status_code == 401 and services.store.read("hello") == []


def test_unknown_apps_and_other_providers_are_404(hooked):
    _, _, client = hooked
    assert client.post("/hooks/github/nope", content=b"{}").status_code == 404
    assert client.post("/hooks/bitbucket/hello", content=b"{}").status_code == 404


def test_a_body_over_5_mib_is_413(hooked):
    _, _, client = hooked
    body = b"x" * (5 * 1024 * 1024 + 1)
    assert client.post("/hooks/github/hello", content=body, headers=signed(body)).status_code == 413


def test_bitbucket_and_azure_devops_pushes_queue_the_named_revision(workspace):
    repo = workspace.repo()
    revision = repo.commit(FUNCTION_APP)
    services = workspace.configure({
        "bb": {"target": str(workspace.target("bb")),
               "source": {"type": "bitbucket", "url": str(repo.path), "secret": SECRET}},
        "ado": {"target": str(workspace.target("ado")),
                "source": {"type": "azure-devops", "url": str(repo.path),
                           "basic_auth": {"username": "hook", "password": "hook-password-for-tests"}}}})
    client = TestClient(create_app(services), base_url="http://localhost")
    bb = json.loads((FIXTURES / "bitbucket/repo-push.json").read_bytes())
    bb["push"]["changes"][0]["new"].update(name="master", target={"hash": revision})
    bb_body = json.dumps(bb).encode()
    ado = json.loads((FIXTURES / "azure-devops/git.push.json").read_bytes())
    ado["resource"]["refUpdates"][0]["newObjectId"] = revision
    auth = "Basic " + base64.b64encode(b"hook:hook-password-for-tests").decode()

    r1 = client.post("/hooks/bitbucket/bb", content=bb_body, headers={
        "X-Event-Key": "repo:push", "X-Request-UUID": "u-1",
        "X-Hub-Signature": "sha256=" + hmac.new(SECRET.encode(), bb_body, hashlib.sha256).hexdigest()})
    r2 = client.post("/hooks/azure-devops/ado", json=ado, headers={"Authorization": auth})
    r3 = client.post("/hooks/azure-devops/ado", json=ado, headers={"Authorization": "Basic eDp5"})

    assert (r1.status_code, r1.json()["pushed"]) == (202, revision)
    assert (r2.status_code, r2.json()["pushed"]) == (202, revision)
    assert r3.status_code == 401
    for app in ("bb", "ado"):
        assert wait_until_settled(services, app).active.status == "success"
