"""The Host names the API answers to (api.hosts), against DNS rebinding: a page whose name
was pointed at 127.0.0.1 reaches the API as a loopback client, but names itself in `Host`.
Through uvicorn on 127.0.0.1, as `sluice api` serves it."""
from __future__ import annotations

import socket

import httpx
import pytest

from tests.helpers import FUNCTION_APP, git_app
from tests.servers.api_server import serving

TOKEN = "t0ken-for-host-tests"


@pytest.fixture
def configured(workspace):
    def configure(**api):
        repo = workspace.repo()
        repo.commit(FUNCTION_APP)
        return workspace.configure({"hello": git_app(repo, workspace.target("hello"))},
                                   api={"token": TOKEN, **api})
    return configure


def test_a_request_naming_a_foreign_host_is_421_even_from_loopback(configured):
    with serving(configured()) as base, httpx.Client(base_url=base, timeout=10) as client:
        port = base.rpartition(":")[2]
        foreign = {path: client.get(path, headers={"Host": f"rebound.example:{port}"})
                   for path in ("/api/apps", "/metrics", "/api/events", "/", "/openapi.json")}
        local = [client.get("/api/apps", headers={"Host": host}).status_code
                 for host in (f"localhost:{port}", "127.0.0.1", f"[::1]:{port}", "LOCALHOST.")]

    assert {path: r.status_code for path, r in foreign.items()} == dict.fromkeys(foreign, 421)
    error = foreign["/api/apps"].json()["error"]
    assert "'rebound.example'" in error and "api.hosts" in error
    assert local == [200] * 4


def test_names_listed_in_api_hosts_are_answered_and_others_are_not(configured):
    services = configured(hosts=["sluice.example.com", "*.internal.example"])
    with serving(services) as base, httpx.Client(base_url=base, timeout=10) as client:
        status = {host: client.get("/api/apps", headers={"Host": host}).status_code
                  for host in ("sluice.example.com", "Sluice.Example.Com:443", "ci.internal.example",
                               "internal.example", "sluice.example.com.evil.example")}

    assert status == {"sluice.example.com": 200, "Sluice.Example.Com:443": 200, "ci.internal.example": 200,
                      "internal.example": 421, "sluice.example.com.evil.example": 421}


def test_a_star_in_api_hosts_answers_any_name(configured):
    with serving(configured(hosts=["*"])) as base:
        response = httpx.get(f"{base}/api/apps", headers={"Host": "anything.example"})

    assert response.status_code == 200


def test_a_request_without_a_host_is_421_but_health_probes_answer_any_host(configured):
    with serving(configured()) as base:
        _, _, port = base.rpartition(":")
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
            sock.sendall(b"GET /api/apps HTTP/1.0\r\n\r\n")
            without_host = b"".join(iter(lambda: sock.recv(65536), b""))
        health = httpx.get(f"{base}/healthz", headers={"Host": "10.1.2.3:8080"})

    assert without_host.startswith(b"HTTP/1.1 421 ") and b"without a Host header" in without_host
    assert health.status_code == 200
