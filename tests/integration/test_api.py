"""The operators' HTTP API (/api/..., /readyz): real FastAPI app, real Redis, the real worker,
real git repositories. TestClient's client is "testclient", not a loopback address; the
loopback rule is tested through uvicorn on 127.0.0.1."""
from __future__ import annotations

import os
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator.api import create_app
from orchestrator.config.settings import SluiceConfig
from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.observe.formatting import deployment_json
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, git_app
from tests.integration.flow import sync_and_wait, wait_until_ended
from tests.integration.recorded import record_deployments
from tests.servers.api_server import serving

TOKEN = "t0ken-for-api-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCAL = "http://localhost"        # a Host the API answers to (TestClient's own, testserver, is not)
V2 = {"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"}
DEPLOYMENT_FIELDS = {"id", "app", "status", "revision", "snapshot", "active", "trigger", "message",
                     "received_at", "started_at", "ended_at", "attempts", "author", "author_email",
                     "deployer", "commit_message", "change", "hosts"}


def configure(workspace, repo, reads: str = "loopback", token: str | None = TOKEN, **apps) -> Services:
    api = {"reads": reads, **({"token": token} if token else {})}
    return workspace.configure({"hello": git_app(repo, workspace.target("hello")), **apps}, api=api)


@pytest.fixture
def deployed(workspace):
    """App `hello` with two successful deployments; a client with the token."""
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = configure(workspace, repo, manual={"target": str(workspace.target("manual"))})
    first = sync_and_wait(services, "hello")
    repo.commit(V2)
    second = sync_and_wait(services, "hello")
    client = TestClient(create_app(services), base_url=LOCAL, headers=AUTH)
    return services, client, repo, first, second




# --- reading --------------------------------------------------------------------------------

def test_apps_are_listed_with_their_source_live_deployment_and_what_waits(deployed):
    services, client, _, _, second = deployed

    apps = {a["name"]: a for a in client.get("/api/apps").json()}

    hello = apps["hello"]
    assert hello["layout"] == "functions" and hello["continuous"] is True
    assert hello["source"] == services.config.apps["hello"].source.describe()
    assert hello["target"] == str(services.config.apps["hello"].target)
    assert hello["active"]["id"] == second.id and hello["active"]["active"] is True
    assert (hello["running"], hello["waiting"], hello["paused"]) == (None, 0, None)
    assert set(hello["active"]) == DEPLOYMENT_FIELDS
    assert apps["manual"]["continuous"] is False and apps["manual"]["active"] is None


def test_an_app_shows_its_deployments_newest_first_as_the_cli_shows_them(deployed):
    services, client, _, first, second = deployed

    body = client.get("/api/apps/hello").json()

    view = services.projections.history("hello")
    assert [d["id"] for d in body["deployments"]] == [second.id, first.id]
    assert body["deployments"][0] == deployment_json(view, view.deployments[second.id])


def test_the_deployment_history_takes_a_limit(deployed):
    _, client, _, _, second = deployed

    assert [d["id"] for d in client.get("/api/apps/hello/deployments?limit=1").json()] == [second.id]
    assert len(client.get("/api/apps/hello/deployments").json()) == 2
    assert len(client.get("/api/apps/hello/deployments?limit=1000").json()) == 2


def test_a_deployment_is_found_by_its_id_alone(deployed):
    _, client, _, first, _ = deployed

    body = client.get(f"/api/deployments/{first.id}").json()

    assert (body["id"], body["app"], body["status"], body["active"]) == (first.id, "hello", "success", False)


def test_the_deployment_history_pages_back_to_the_first_deployment(deployed):
    services, client, _, first, second = deployed
    ids = record_deployments(services, "hello", 60)[::-1] + [second.id, first.id]

    seen: list[str] = []
    while page := client.get("/api/apps/hello/deployments", params={
            "limit": 25, **({"before": seen[-1]} if seen else {})}).json():
        seen += [d["id"] for d in page]
    unknown = client.get("/api/apps/hello/deployments?before=20240101-000000-abcdef")

    assert seen == ids
    assert unknown.status_code == 404 and "no deployment '20240101-000000-abcdef'" in unknown.json()["error"]


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/apps/nope"), ("GET", "/api/apps/nope/deployments"),
    ("GET", "/api/deployments/20240101-000000-abcdef"), ("GET", "/api/deployments/nonsense"),
    ("POST", "/api/apps/nope/sync"), ("POST", "/api/apps/nope/rollback")])
def test_unknown_apps_and_deployments_are_404_with_a_message(deployed, method, path):
    _, client, _, _, _ = deployed

    response = client.request(method, path)

    assert response.status_code == 404 and response.json()["error"].startswith("no ")


# --- changing -------------------------------------------------------------------------------

def test_sync_queues_the_sources_head_and_it_goes_live(deployed):
    services, client, repo, _, _ = deployed
    revision = repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v3'\n"})

    response = client.post("/api/apps/hello/sync")

    assert response.status_code == 202
    body = response.json()
    assert (body["app"], body["revision"], body["new"]) == ("hello", revision, True)
    assert wait_until_ended(services, "hello", body["deployment_id"]).status == "success"
    assert (services.config.apps["hello"].target / "HttpHello/__init__.py").read_text().endswith("'v3'\n")


def test_a_rejected_head_is_not_synced_saying_why_and_force_deploys_it(deployed):
    services, client, repo, _, _ = deployed
    revision = repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v3'\n"})
    reason = "health: GET http://127.0.0.1:9/ answered 500 (3 of 3 probes failed)"
    # what a worker records when the revision rolled back by itself
    execute(services.projections, "hello", lambda view: [ev.RevisionRejected(
        app="hello", at=time.time(), revision=revision, deployment_id="d-rolled-back", reason=reason)])

    refused = client.post("/api/apps/hello/sync")
    shown = client.get("/api/apps/hello").json()
    forced = client.post("/api/apps/hello/sync", json={"force": True})

    assert refused.status_code == 202 and refused.json()["deployment_id"] is None
    assert refused.json()["reason"] == (f"revision {revision[:12]} was rejected: {reason}; "
                                        "`sluice sync hello --force` deploys it anyway")
    assert shown["rejected"] == {revision: reason}
    assert forced.status_code == 202 and forced.json()["new"] is True
    assert wait_until_ended(services, "hello", forced.json()["deployment_id"]).status == "success"
    assert client.get("/api/apps/hello").json()["rejected"] == {}


def test_redeploy_runs_a_named_deployments_snapshot_again_as_a_new_deployment(deployed):
    services, client, _, first, _ = deployed

    response = client.post("/api/apps/hello/redeploy", json={"deployment_id": first.id})

    assert response.status_code == 202 and response.json()["new"] is True
    d = wait_until_ended(services, "hello", response.json()["deployment_id"])
    assert (d.status, d.trigger, d.snapshot, d.origin) == ("success", "redeploy", first.snapshot, first.id)


def test_redeploy_without_a_body_runs_the_active_deployment_again(deployed):
    services, client, _, _, second = deployed

    response = client.post("/api/apps/hello/redeploy")

    d = wait_until_ended(services, "hello", response.json()["deployment_id"])
    assert (response.status_code, d.origin) == (202, second.id)


def test_redeploying_an_unknown_deployment_is_404(deployed):
    _, client, _, _, _ = deployed
    response = client.post("/api/apps/hello/redeploy", json={"deployment_id": "20240101-000000-abcdef"})
    assert response.status_code == 404 and "20240101-000000-abcdef" in response.json()["error"]


def test_rollback_switches_back_at_once_and_pauses_automatic_deployments(deployed):
    services, client, _, first, _ = deployed

    response = client.post("/api/apps/hello/rollback")

    assert response.status_code == 200
    body = response.json()
    assert (body["trigger"], body["status"], body["active"], body["app"]) == ("rollback", "success", True, "hello")
    assert os.readlink(services.config.apps["hello"].target) == first.release
    assert first.id in client.get("/api/apps/hello").json()["paused"]


def test_rollback_to_a_deployment_that_did_not_succeed_is_409_naming_the_cause(deployed):
    services, client, _, _, _ = deployed
    failed = wait_until_ended(services, "hello", request_deployment(
        services, "hello", "0" * 40, "manual").deployment_id)

    response = client.post("/api/apps/hello/rollback", json={"to": failed.id})

    assert failed.status == "failed"
    assert response.status_code == 409 and "did not succeed" in response.json()["error"]


def test_what_the_apps_state_refuses_is_409_with_the_reason(deployed):
    _, client, _, _, _ = deployed

    sync = client.post("/api/apps/manual/sync")
    rollback = client.post("/api/apps/manual/rollback")
    redeploy = client.post("/api/apps/manual/redeploy")

    assert sync.status_code == 409 and "sluice import" in sync.json()["error"]
    assert rollback.status_code == 409 and "no earlier release" in rollback.json()["error"]
    assert redeploy.status_code == 409 and "nothing live yet" in redeploy.json()["error"]


# --- who may ----------------------------------------------------------------------------------

def test_changes_without_the_token_or_with_a_wrong_one_are_401_and_ask_for_a_bearer_token(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    client = TestClient(create_app(configure(workspace, repo)), base_url=LOCAL)

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.post("/api/apps/hello/sync", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["error"]
    assert client.get("/api/apps/hello/deployments", headers=AUTH).json() == []


def test_with_no_token_configured_changes_are_403_saying_to_set_api_token(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    client = TestClient(create_app(configure(workspace, repo, reads="open", token=None)), base_url=LOCAL)

    response = client.post("/api/apps/hello/sync", headers=AUTH)

    assert response.status_code == 403 and "api.token" in response.json()["error"]
    assert client.get("/api/apps").status_code == 200


def test_reads_from_another_host_need_the_token_under_the_default_loopback_rule(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    client = TestClient(create_app(configure(workspace, repo)), base_url=LOCAL)      # client host "testclient"

    refused = client.get("/api/apps")

    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/apps", headers=AUTH).status_code == 200
    assert client.get("/api/queue", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_reads_from_loopback_need_no_token_unless_a_proxy_forwarded_them(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    with serving(configure(workspace, repo)) as base:
        plain = httpx.get(f"{base}/api/apps")
        forwarded = httpx.get(f"{base}/api/apps", headers={"X-Forwarded-For": "203.0.113.9"})
        wrong = httpx.get(f"{base}/api/apps", headers={"Authorization": "Bearer nope"})
        proxy_auth = httpx.get(f"{base}/api/apps", headers={"Authorization": "Basic eDp5"})
        change = httpx.post(f"{base}/api/apps/hello/sync")

    assert plain.status_code == 200 and plain.json()[0]["name"] == "hello"
    assert forwarded.status_code == 401 and wrong.status_code == 401
    assert proxy_auth.status_code == 200        # not a bearer token: not ours to judge
    assert change.status_code == 401


@pytest.mark.parametrize("reads,without,with_token", [("open", 200, 200), ("token", 401, 200)])
def test_reads_may_be_opened_to_anyone_or_closed_to_all_without_the_token(workspace, reads, without, with_token):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = configure(workspace, repo, reads=reads)
    client = TestClient(create_app(services), base_url=LOCAL)
    with serving(services) as base:
        from_loopback = httpx.get(f"{base}/api/queue")

    assert client.get("/api/apps").status_code == without == from_loopback.status_code
    assert client.get("/api/apps", headers=AUTH).status_code == with_token


def test_reads_that_need_a_token_when_none_is_configured_are_403_saying_so(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    client = TestClient(create_app(configure(workspace, repo, reads="token", token=None)), base_url=LOCAL)

    response = client.get("/api/apps")

    assert response.status_code == 403 and "api.token" in response.json()["error"]


# --- health, errors, schema -----------------------------------------------------------------

def test_readyz_is_ready_when_redis_answers_and_a_worker_answers_a_ping(workspace):
    repo = workspace.repo()
    client = TestClient(create_app(configure(workspace, repo)), base_url=LOCAL)

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ready" and response.json()["workers"] >= 1


def test_readyz_is_503_when_no_worker_listens_on_its_redis(workspace):
    repo = workspace.repo()
    services = configure(workspace, repo)
    elsewhere = workspace.redis_url.rsplit("/", 1)[0] + "/1"      # the worker uses database 0
    lonely = Services.build(services.config.model_copy(update={"redis_url": elsewhere}))

    response = TestClient(create_app(lonely)).get("/readyz")

    assert response.status_code == 503
    assert response.json()["workers"] == 0 and "no worker" in response.json()["error"]


def test_readyz_is_503_with_the_reason_when_redis_cannot_be_reached():
    from orchestrator.runtime.embedded_redis import free_port
    services = Services.build(SluiceConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0"))

    response = TestClient(create_app(services)).get("/readyz")

    assert response.status_code == 503 and "cannot reach Redis" in response.json()["error"]


def test_an_unexpected_error_is_a_500_json_without_a_traceback(workspace):
    repo = workspace.repo()
    app = create_app(configure(workspace, repo))

    @app.get("/api/boom")
    def boom():
        raise RuntimeError("a detail only the server log should hold")

    response = TestClient(app, base_url=LOCAL, raise_server_exceptions=False).get("/api/boom")

    assert response.status_code == 500 and response.json() == {"error": "internal error"}


def test_an_invalid_request_is_a_422_json_with_a_message(deployed):
    _, client, _, _, _ = deployed

    response = client.get("/api/apps/hello/deployments?limit=0")

    assert response.status_code == 422 and "limit" in response.json()["error"]


def test_the_openapi_schema_documents_the_operations_and_their_models(deployed):
    _, client, _, _, _ = deployed

    spec = client.get("/openapi.json").json()

    assert {"/api/apps", "/api/apps/{app}", "/api/apps/{app}/deployments", "/api/queue",
            "/api/deployments/{deployment_id}", "/api/apps/{app}/sync", "/api/apps/{app}/redeploy",
            "/api/apps/{app}/rollback", "/readyz"} <= set(spec["paths"])
    assert set(spec["components"]["schemas"]["Deployment"]["properties"]) == DEPLOYMENT_FIELDS
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
