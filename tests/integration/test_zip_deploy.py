"""Kudu's zip deploy against the API served by uvicorn on a loopback port: `curl` exactly as
Microsoft's docs show it, Python `requests`, real Redis and worker."""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import requests

from orchestrator.access.credentials import set_credentials
from tests.helpers import FUNCTION_APP, wait_for
from tests.integration.flow import tree
from tests.servers.api_server import serving

PASSWORD = "zip-pass-1"
V2 = {**FUNCTION_APP, "HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"}


def zip_of(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (modes or {}).get(name, 0o100644) << 16
            archive.writestr(info, content)
    return out.getvalue()


@pytest.fixture
def kudu(workspace):
    """App `hello` takes zips (manual source, user alice); app `tracked` deploys a git branch.
    Yields (services, the base URL of the API)."""
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({
        "hello": {"target": str(workspace.target("hello")), "build": "none"},
        "tracked": {"target": str(workspace.target("tracked")),
                    "source": {"type": "git", "url": str(repo.path), "branch": "master"}}},
        api={"max_zip_bytes": 200_000})
    set_credentials(services, "hello", "alice", PASSWORD)
    set_credentials(services, "tracked", "alice", PASSWORD)
    with serving(services) as base:
        yield services, base


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-i", *args], capture_output=True, text=True, timeout=120)


def headers_and_body(output: str) -> tuple[int, dict[str, str], str]:
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    return status, {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}, body


def test_curl_as_microsofts_docs_show_it_deploys_a_zip_and_polls_its_location_until_complete(
        kudu, workspace, tmp_path):
    services, base = kudu
    package = tmp_path / "app.zip"
    package.write_bytes(zip_of(FUNCTION_APP))

    posted = curl("-X", "POST", "-u", f"alice:{PASSWORD}", "--data-binary", f"@{package}",
                  f"{base}/scm/hello/api/zipdeploy?isAsync=true")

    status, headers, _ = headers_and_body(posted.stdout)
    assert status == 202, posted.stdout
    location = headers["location"]

    def complete():
        polled = curl("-u", f"alice:{PASSWORD}", location)
        code, _, body = headers_and_body(polled.stdout)
        assert code == 200, polled.stdout
        found = json.loads(body)
        return found if found["complete"] else None
    deployment = wait_for(complete, timeout=60, interval=0.2, what="the zip deployment to complete")
    assert deployment["status"] == 4 and deployment["active"] is True
    assert deployment["deployer"] == "ZipDeploy" and deployment["site_name"] == "hello"
    assert tree(workspace.target("hello")) == FUNCTION_APP


def test_a_synchronous_zip_deploy_answers_200_once_the_zip_is_live(kudu, workspace):
    _, base = kudu

    answer = requests.post(f"{base}/scm/hello/api/zipdeploy", data=zip_of(V2),
                           auth=("alice", PASSWORD),
                           params={"deployer": "ci", "message": "release 2", "author": "Ann",
                                   "authorEmail": "ann@example.com"}, timeout=60)

    assert answer.status_code == 200, answer.text
    assert tree(workspace.target("hello")) == V2
    body = answer.json()
    assert (body["deployer"], body["message"], body["author"], body["author_email"]) == \
        ("ci", "release 2", "Ann", "ann@example.com")


def test_the_same_zip_twice_is_already_live_the_second_time(kudu):
    _, base = kudu
    package = zip_of(FUNCTION_APP)
    first = requests.post(f"{base}/scm/hello/api/zipdeploy", data=package, auth=("alice", PASSWORD),
                          timeout=60)

    again = requests.post(f"{base}/scm/hello/api/zipdeploy", data=package, auth=("alice", PASSWORD),
                          timeout=60)

    assert first.status_code == again.status_code == 200, again.text
    assert "already live" in again.json()["status_text"]


def test_the_user_may_be_given_as_app_backslash_user_as_azure_shows_it(kudu, workspace):
    _, base = kudu

    answer = requests.post(f"{base}/scm/hello/api/zipdeploy", data=zip_of(FUNCTION_APP),
                           auth=("hello\\alice", PASSWORD), timeout=60)

    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("auth", [None, ("alice", "wrong-pass-1"), ("bob", PASSWORD)])
def test_without_the_apps_credentials_a_zip_is_refused_with_401_and_nothing_changes(kudu, workspace, auth):
    services, base = kudu

    answer = requests.post(f"{base}/scm/hello/api/zipdeploy", data=zip_of(FUNCTION_APP), auth=auth,
                           timeout=60)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert services.projections.app("hello").deployments == {}


def test_a_zip_for_an_app_on_continuous_deployment_is_refused_with_409_naming_its_source(kudu):
    _, base = kudu

    answer = requests.post(f"{base}/scm/tracked/api/zipdeploy", data=zip_of(FUNCTION_APP),
                           auth=("alice", PASSWORD), timeout=60)

    assert answer.status_code == 409
    assert "continuous deployment" in answer.json()["error"] and "git" in answer.json()["error"]


def test_a_hostile_zip_is_refused_naming_the_entry_and_the_live_site_stays_as_it_was(kudu, workspace):
    _, base = kudu
    requests.post(f"{base}/scm/hello/api/zipdeploy", data=zip_of(FUNCTION_APP),
                  auth=("alice", PASSWORD), timeout=60)

    answer = requests.post(f"{base}/scm/hello/api/zipdeploy",
                           data=zip_of({**V2, "../../escape.txt": "x"}),
                           auth=("alice", PASSWORD), timeout=60)

    assert answer.status_code == 400
    assert "../../escape.txt" in answer.json()["error"]
    assert tree(workspace.target("hello")) == FUNCTION_APP
    assert not (workspace.root / "escape.txt").exists()


def test_a_body_over_the_limit_is_refused_with_413_while_it_streams(kudu, workspace):
    services, base = kudu
    sent = [0]

    def chunks():           # chunked: no Content-Length to refuse it by
        for _ in range(100):
            sent[0] += 1
            yield os.urandom(16 * 1024)

    with _either():
        answer = requests.post(f"{base}/scm/hello/api/zipdeploy", data=chunks(),
                               auth=("alice", PASSWORD), timeout=60)
        assert answer.status_code == 413
        assert "api.max_zip_bytes" in answer.json()["error"]
    assert not list((services.config.data_dir / "store" / "tmp").glob("upload-*"))


class _either:
    """The server may answer 413 and close before the client has sent everything: then the
    client sees its connection reset instead of the answer."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, requests.ConnectionError)


def test_executable_bits_come_from_the_entries_attributes(kudu, workspace):
    _, base = kudu
    files = {**FUNCTION_APP, "run.sh": "#!/bin/sh\necho hi\n"}

    answer = requests.post(f"{base}/scm/hello/api/zipdeploy", auth=("alice", PASSWORD), timeout=60,
                           data=zip_of(files, {"run.sh": 0o100755}))

    assert answer.status_code == 200, answer.text
    live = Path(workspace.target("hello"))
    assert os.stat(live / "run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(live / "host.json").st_mode & stat.S_IXUSR


def test_onedeploy_publish_of_type_zip_deploys_like_zipdeploy(kudu, workspace):
    _, base = kudu

    answer = requests.post(f"{base}/scm/hello/api/publish", params={"type": "zip"},
                           data=zip_of(V2), auth=("alice", PASSWORD), timeout=60)
    refused = requests.post(f"{base}/scm/hello/api/publish", params={"type": "war"},
                            data=zip_of(V2), auth=("alice", PASSWORD), timeout=60)

    assert answer.status_code == 200, answer.text
    assert answer.json()["deployer"] == "OneDeploy"
    assert tree(workspace.target("hello")) == V2
    assert refused.status_code == 400 and "type='war'" in refused.json()["error"]


def test_the_zip_apis_put_deploys_the_zip_as_the_site(kudu, workspace):
    _, base = kudu

    answer = requests.put(f"{base}/scm/hello/api/zip/site/wwwroot/", data=zip_of(FUNCTION_APP),
                          auth=("alice", PASSWORD), timeout=60)

    assert answer.status_code == 200, answer.text
    assert tree(workspace.target("hello")) == FUNCTION_APP


def test_a_zip_deployment_is_in_the_history_with_trigger_zipdeploy(kudu):
    services, base = kudu
    requests.post(f"{base}/scm/hello/api/zipdeploy", data=zip_of(FUNCTION_APP),
                  auth=("alice", PASSWORD), timeout=60)

    (d,) = services.projections.app("hello").deployments.values()
    assert d.trigger == "zipdeploy" and d.deployer == "ZipDeploy"
    assert time.time() - d.received_at < 120
