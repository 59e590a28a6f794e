"""Kudu's read access (vfs, the zip of the site) and its generic deploy hook under each app's
Kudu root, against the API served by uvicorn on a loopback port, with Python `requests`, a
real Redis and worker."""
from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import pytest
import requests

from orchestrator.access.credentials import set_credentials
from orchestrator.core.statuses import DeploymentStatus
from tests.helpers import FUNCTION_APP, wait_for
from tests.integration.flow import tree, wait_until_let_go
from tests.integration.test_zip_deploy import zip_of
from tests.servers.api_server import serving

PASSWORD = "read-pass-1"
AUTH = ("alice", PASSWORD)
SITE = {**FUNCTION_APP, "run.sh": "#!/bin/sh\necho hi\n", "static/empty.txt": ""}
MODES = {"run.sh": 0o100755}
LINKED = {"latest.json": "host.json"}       # a symlink inside the app


def zip_with_links(files: dict[str, str], links: dict[str, str]) -> bytes:
    out = io.BytesIO(zip_of(files, MODES))
    with zipfile.ZipFile(out, "a") as archive:
        for name, target in links.items():
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return out.getvalue()


@pytest.fixture
def kudu(workspace):
    """App `hello` (manual source) with SITE live, deployed as a zip; app `fresh` with nothing
    live; app `tracked` deploying a git branch (its repository in `workspace.root/repo`).
    Yields (services, the base URL of the API, the repository)."""
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({
        "hello": {"target": str(workspace.target("hello")), "build": "none"},
        "fresh": {"target": str(workspace.target("fresh")), "build": "none"},
        "tracked": {"target": str(workspace.target("tracked")), "build": "none",
                    "source": {"type": "git", "url": str(repo.path), "branch": "master",
                               "poll_interval": 0}}})
    for app in ("hello", "fresh", "tracked"):
        set_credentials(services, app, "alice", PASSWORD)
    with serving(services) as base:
        deployed = requests.post(f"{base}/scm/hello/api/zipdeploy", auth=AUTH, timeout=60,
                                 data=zip_with_links(SITE, LINKED))
        assert deployed.status_code == 200, deployed.text
        wait_until_let_go(services, "hello")
        yield services, base, repo


def vfs(base: str, app: str = "hello") -> str:
    return f"{base}/scm/{app}/api/vfs/site/wwwroot/"


def test_a_file_is_read_with_its_bytes_a_content_type_by_its_name_and_an_etag(kudu):
    _, base, _ = kudu

    answer = requests.get(vfs(base) + "host.json", auth=AUTH, timeout=30)
    again = requests.get(vfs(base) + "host.json", auth=AUTH, timeout=30,
                         headers={"If-None-Match": answer.headers.get("ETag", "none")})

    assert answer.status_code == 200, answer.text
    assert answer.content == FUNCTION_APP["host.json"].encode()
    assert answer.headers["Content-Type"].startswith("application/json")
    assert again.status_code == 304


def test_a_folder_is_listed_as_kudus_vfs_entries(kudu):
    _, base, _ = kudu

    answer = requests.get(vfs(base), auth=AUTH, timeout=30)
    nested = requests.get(vfs(base) + "HttpHello/", auth=AUTH, timeout=30)

    assert answer.status_code == 200, answer.text
    entries = {e["name"]: e for e in answer.json()}
    assert set(entries) == {"HttpHello", "host.json", "latest.json", "run.sh", "static"}
    folder, file = entries["HttpHello"], entries["host.json"]
    assert folder["mime"] == "inode/directory" and folder["size"] == 0
    assert folder["href"] == vfs(base) + "HttpHello/"
    assert file["mime"] == "application/json" and file["size"] == len(FUNCTION_APP["host.json"])
    assert file["path"] == "/home/site/wwwroot/host.json"
    assert set(file) == {"name", "size", "mtime", "crtime", "mime", "href", "path"}
    assert entries["latest.json"]["size"] == len(FUNCTION_APP["host.json"])   # followed inside
    assert {e["name"] for e in nested.json()} == {"function.json", "__init__.py"}


def test_a_folder_named_without_its_slash_is_redirected_to_it_as_kudu_does(kudu):
    _, base, _ = kudu

    answer = requests.get(vfs(base) + "HttpHello", auth=AUTH, timeout=30, allow_redirects=False)

    assert answer.status_code == 307
    assert answer.headers["Location"] == vfs(base) + "HttpHello/"


def test_a_missing_path_app_or_live_release_is_404_saying_which(kudu):
    _, base, _ = kudu

    missing = requests.get(vfs(base) + "nope.txt", auth=AUTH, timeout=30)
    no_app = requests.get(vfs(base, "nobody"), auth=AUTH, timeout=30)
    nothing_live = requests.get(vfs(base, "fresh"), auth=AUTH, timeout=30)

    assert missing.status_code == 404 and "nope.txt" in missing.json()["error"]
    assert no_app.status_code in (401, 404)         # an unknown app has no credentials either
    assert nothing_live.status_code == 404 and "nothing live" in nothing_live.json()["error"]


def test_without_the_apps_credentials_nothing_is_read(kudu):
    _, base, _ = kudu

    answer = requests.get(vfs(base) + "host.json", auth=("alice", "wrong-pass-1"), timeout=30)
    zipped = requests.get(f"{base}/scm/hello/api/zip/site/wwwroot/", timeout=30)

    assert answer.status_code == zipped.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize("path", ["%2e%2e/%2e%2e/etc/passwd", "HttpHello/%2E%2E/%2E%2E/x",
                                  "/etc/passwd"])
def test_a_path_climbing_out_of_the_site_is_refused_with_400(kudu, path):
    _, base, _ = kudu

    answer = requests.get(vfs(base) + path, auth=AUTH, timeout=30)

    assert answer.status_code == 400, answer.text
    assert "root:" not in answer.text


def test_symlinks_in_the_release_leading_out_of_it_are_never_followed(kudu, workspace, tmp_path):
    _, base, _ = kudu
    hostile = tmp_path / "hostile-release"
    hostile.mkdir()
    (hostile / "host.json").write_text("{}")
    os.symlink("/etc", hostile / "etc")
    os.symlink("/etc/passwd", hostile / "passwd")
    os.symlink("../../..", hostile / "up")
    link = tmp_path / "next-target"
    os.symlink(hostile, link)
    os.replace(link, workspace.target("hello"))       # as a switch does: one rename

    through_folder = requests.get(vfs(base) + "etc/passwd", auth=AUTH, timeout=30)
    through_file = requests.get(vfs(base) + "passwd", auth=AUTH, timeout=30)
    through_up = requests.get(vfs(base) + "up/", auth=AUTH, timeout=30)
    listed = requests.get(vfs(base), auth=AUTH, timeout=30)

    for answer in (through_folder, through_file, through_up):
        assert answer.status_code == 404, answer.text
        assert "root:" not in answer.text
    entries = {e["name"]: e for e in listed.json()}
    assert entries["etc"]["mime"] == entries["passwd"]["mime"] == "inode/symlink"
    assert entries["passwd"]["size"] == 0


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_writes_through_vfs_are_409_releases_being_read_only(kudu, workspace, method):
    _, base, _ = kudu

    answer = requests.request(method, vfs(base) + "host.json", data=b"{}", auth=AUTH, timeout=30,
                              headers={"If-Match": "*"})

    assert answer.status_code == 409
    assert "read-only" in answer.json()["error"] and "zip" in answer.json()["error"]
    assert tree(workspace.target("hello"))["host.json"] == FUNCTION_APP["host.json"]


def test_the_live_release_as_a_zip_keeps_links_and_exec_bits_and_deploys_back_as_the_same_snapshot(kudu):
    services, base, _ = kudu

    answer = requests.get(f"{base}/scm/hello/api/zip/site/wwwroot/", auth=AUTH, timeout=60)

    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    files = {i.filename: i for i in archive.infolist() if not i.is_dir()}
    assert set(files) == {*SITE, *LINKED}
    assert stat.S_ISLNK(files["latest.json"].external_attr >> 16)
    assert archive.read("latest.json") == b"host.json"
    assert files["run.sh"].external_attr >> 16 & 0o111
    assert not files["host.json"].external_attr >> 16 & 0o111
    live = services.projections.app("hello").active

    again = requests.post(f"{base}/scm/hello/api/zipdeploy", data=answer.content, auth=AUTH,
                          timeout=60)

    assert again.status_code == 200, again.text
    assert "already live" in again.json()["status_text"]
    redeployed = services.projections.app("hello").deployments[again.json()["id"]]
    assert redeployed.preset_snapshot == live.preset_snapshot


def test_a_folder_of_the_release_is_zipped_on_its_own(kudu):
    _, base, _ = kudu

    answer = requests.get(f"{base}/scm/hello/api/zip/site/wwwroot/HttpHello/", auth=AUTH, timeout=60)

    assert answer.status_code == 200, answer.text
    assert sorted(zipfile.ZipFile(io.BytesIO(answer.content)).namelist()) == \
        ["__init__.py", "function.json"]


def hook(base: str, app: str, payload: dict | None = None, **kwargs) -> requests.Response:
    return requests.post(f"{base}/scm/{app}/deploy", auth=AUTH, timeout=60,
                         **({"json": payload} if payload is not None else {}), **kwargs)


def test_the_generic_hook_naming_the_apps_source_deploys_its_head(kudu, workspace):
    services, base, repo = kudu
    head = repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})

    answer = hook(base, "tracked", {"format": "basic", "url": f"file://user:pw@{repo.path}/.git/",
                                    "is_hg": False})

    assert answer.status_code == 200, answer.text
    d = services.projections.app("tracked").deployments[answer.json()["id"]]
    assert (d.revision, d.trigger, d.status) == (head, "webhook", DeploymentStatus.SUCCESS)
    assert "v2" in tree(workspace.target("tracked"))["HttpHello/__init__.py"]


def test_the_generic_hook_in_a_form_with_is_async_answers_202_with_a_location(kudu):
    services, base, repo = kudu
    payload = json.dumps({"format": "basic", "url": str(repo.path)})

    answer = requests.post(f"{base}/scm/tracked/deploy", params={"isAsync": "true"}, auth=AUTH,
                           data={"payload": payload}, timeout=60)

    assert answer.status_code == 202, answer.text
    location = answer.headers["Location"]

    def complete():
        found = requests.get(location, auth=AUTH, timeout=30).json()
        return found if found["complete"] else None
    assert wait_for(complete, timeout=60, interval=0.2, what="the hook's deployment")["status"] == 4


def test_the_generic_hook_naming_another_repository_is_409_naming_the_apps_source(kudu):
    services, base, repo = kudu

    other = hook(base, "tracked", {"format": "basic", "url": "https://example.com/someone/else.git"})
    as_hg = hook(base, "tracked", {"format": "basic", "url": str(repo.path), "scm": "hg"})

    for answer in (other, as_hg):
        assert answer.status_code == 409, answer.text
        assert str(repo.path) in answer.json()["error"]
    assert services.projections.app("tracked").deployments == {}


def test_the_generic_hook_for_an_app_without_a_repository_is_409(kudu):
    _, base, repo = kudu

    answer = hook(base, "hello", {"format": "basic", "url": str(repo.path)})

    assert answer.status_code == 409
    assert "manual" in answer.json()["error"] and "zip" in answer.json()["error"]


@pytest.mark.parametrize("body", [b"not json", b'{"format": "github", "url": "x"}',
                                  b'{"format": "basic"}'])
def test_a_payload_kudu_would_not_take_is_400(kudu, body):
    _, base, _ = kudu

    answer = hook(base, "tracked", data=body, headers={"Content-Type": "application/json"})

    assert answer.status_code == 400, answer.text
    assert "format" in answer.json()["error"]


def test_the_generic_hook_needs_the_apps_credentials(kudu):
    services, base, repo = kudu

    answer = requests.post(f"{base}/scm/tracked/deploy", timeout=30,
                           json={"format": "basic", "url": str(repo.path)})

    assert answer.status_code == 401
    assert services.projections.app("tracked").deployments == {}
