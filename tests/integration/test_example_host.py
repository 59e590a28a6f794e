"""The example host `make run` starts (examples/host/serve.py) serves the example function
app from the live release as the Azure Functions Python worker does, and SIGHUP makes it
serve the release the symlink points at now, with fresh imports, in the same process.

The suite runs offline, so each release here holds a small stand-in for the `azure.functions`
package where Sluice's build would install the real one (.python_packages/lib/site-packages),
with the real package's signatures; `make run` builds the real one from PyPI."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator.runtime.processes import terminate
from tests.helpers import wait_for, write_files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hello-functions"
HOST = ROOT / "examples" / "host" / "serve.py"
SITE_PACKAGES = ".python_packages/lib/site-packages"

AZURE_FUNCTIONS_STAND_IN = '''
class HttpRequest:
    def __init__(self, method, url, *, headers=None, params=None, route_params=None, body):
        self.method, self.url, self.headers = method.upper(), url, dict(headers or {})
        self.params, self.route_params, self._body = dict(params or {}), dict(route_params or {}), body

    def get_body(self):
        return self._body


class HttpResponse:
    def __init__(self, body=None, *, status_code=None, headers=None, mimetype=None, charset=None):
        self.status_code, self.headers = status_code or 200, dict(headers or {})
        self.mimetype, self.charset = mimetype or "text/plain", charset or "utf-8"
        self._body = body.encode(self.charset) if isinstance(body, str) else (body or b"")

    def get_body(self):
        return self._body
'''


def release(root: Path, name: str, files: dict[str, str] | None = None) -> Path:
    """The example app as Sluice releases it (built, local settings left out), with `files`."""
    folder = root / "releases" / name
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("local.settings.json"))
    write_files(folder, {f"{SITE_PACKAGES}/azure/__init__.py": "",
                         f"{SITE_PACKAGES}/azure/functions/__init__.py": AZURE_FUNCTIONS_STAND_IN,
                         **(files or {})})
    return folder


def point(target: Path, folder: Path) -> None:
    scratch = target.with_name(target.name + ".new")
    os.symlink(folder, scratch)
    os.replace(scratch, target)


def greeting(version: str) -> str:
    return (EXAMPLE / "HttpHello" / "__init__.py").read_text().replace("version 1", version)


class Host:
    def __init__(self, root: Path):
        self.target, self.pidfile, self.log = root / "site", root / "host.pid", root / "host.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Host:
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(HOST), "--target", str(self.target), "--port", "0",
                 "--pidfile", str(self.pidfile)], stdout=out, stderr=subprocess.STDOUT, cwd="/")
        port = wait_for(lambda: self._port(1) or self.proc.poll() is not None, what="the host to listen")
        assert self.proc.poll() is None, self.log.read_text()
        self.url = f"http://127.0.0.1:{port}"
        return self

    def _port(self, starts: int) -> str | None:
        found = re.findall(r" on http://127\.0\.0\.1:(\d+)", self.log.read_text())
        return found[-1] if len(found) >= starts else None

    def reload(self) -> None:
        assert self.proc is not None
        starts = len(re.findall(" on http://", self.log.read_text()))
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self._port(starts + 1), what="the host to start again")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)


@pytest.fixture
def host(tmp_path):
    running = Host(tmp_path)
    yield running
    terminate(running.proc, grace=5)


def test_the_host_serves_the_live_releases_function_and_reports_the_release_healthy(tmp_path, host):
    first = release(tmp_path, "20260101-000000-000001")
    point(host.target, first)
    host.start()

    hello, health = host.get("/api/HttpHello"), host.get("/health")

    assert (hello.status_code, hello.text) == (200, "Hello from Sluice, version 1")
    assert hello.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert health.status_code == 200
    assert health.json() == {"status": "healthy", "release": str(first), "deployment": first.name,
                             "functions": {"HttpHello": "loaded"}}


def test_sighup_serves_the_release_the_symlink_points_at_now_with_fresh_imports_in_the_same_process(tmp_path, host):
    point(host.target, release(tmp_path, "r1"))
    host.start()
    point(host.target, release(tmp_path, "r2", {"HttpHello/__init__.py": greeting("version 2")}))
    assert host.get("/api/HttpHello").text.endswith("version 1")        # pinned: the switch alone is not enough

    host.reload()

    assert host.get("/api/HttpHello").text == "Hello from Sluice, version 2"
    assert host.get("/health").json()["deployment"] == "r2"
    assert int(host.pidfile.read_text()) == host.proc.pid and host.proc.poll() is None


def test_requests_during_a_reload_are_answered_not_refused(tmp_path, host):
    point(host.target, release(tmp_path, "r1"))
    host.start()
    point(host.target, release(tmp_path, "r2", {"HttpHello/__init__.py": greeting("version 2")}))

    host.proc.send_signal(signal.SIGHUP)
    answers = []
    while not answers or answers[-1] != (200, "Hello from Sluice, version 2"):
        answer = host.get("/api/HttpHello")        # a refused connection would raise here
        answers.append((answer.status_code, answer.text))

    assert {status for status, _ in answers} == {200}


def test_a_function_that_does_not_import_makes_the_host_unhealthy_naming_it(tmp_path, host):
    point(host.target, release(tmp_path, "broken", {"HttpHello/__init__.py": "def main(req:\n"}))
    host.start()

    health = host.get("/health")

    assert health.status_code == 500
    assert health.json()["functions"]["HttpHello"].startswith("SyntaxError")
    assert host.get("/api/HttpHello").status_code == 500


def test_a_request_reaches_the_function_and_its_response_comes_back_whole(tmp_path, host):
    echo = ("import azure.functions as func\n\n"
            "def main(req: func.HttpRequest) -> func.HttpResponse:\n"
            "    return func.HttpResponse(req.method + ' ' + req.params['name'] + ' ' + req.get_body().decode(),\n"
            "                             status_code=201, headers={'X-Echo': 'yes'}, mimetype='text/x-echo')\n")
    point(host.target, release(tmp_path, "r1", {
        "Echo/function.json": '{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req",'
                              ' "methods": ["post"], "route": "echo"}, {"type": "http", "direction": "out",'
                              ' "name": "$return"}]}',
        "Echo/__init__.py": echo}))
    host.start()

    answer = httpx.post(host.url + "/api/echo?name=sluice", content=b"body", timeout=10)

    assert (answer.status_code, answer.text, answer.headers["X-Echo"]) == (201, "POST sluice body", "yes")
    assert answer.headers["Content-Type"] == "text/x-echo; charset=utf-8"
    assert host.get("/api/echo").status_code == 405            # its binding takes POST only


def test_a_function_that_raises_answers_500(tmp_path, host):
    point(host.target, release(tmp_path, "r1", {"HttpHello/__init__.py": "def main(req):\n    raise ValueError\n"}))
    host.start()

    assert host.get("/api/HttpHello").status_code == 500
    assert host.get("/health").status_code == 200               # it loads: calls fail, not the app


def test_before_any_release_the_host_answers_503_and_sighup_finds_the_first(tmp_path, host):
    host.start()
    assert host.get("/health").status_code == host.get("/api/HttpHello").status_code == 503
    point(host.target, release(tmp_path, "r1"))

    host.reload()

    assert host.get("/api/HttpHello").text == "Hello from Sluice, version 1"


def test_sigterm_stops_the_host_and_removes_its_pidfile(tmp_path, host):
    host.start()

    host.proc.terminate()

    assert host.proc.wait(10) == 0
    assert not host.pidfile.exists()
