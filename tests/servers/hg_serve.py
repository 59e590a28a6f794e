"""Real Mercurial repositories and a real `hg serve` on a free loopback port."""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx

from orchestrator.runtime.processes import terminate
from orchestrator.sources.hg import hg_executable
from tests.helpers import wait_for, write_files

# No user or system hgrc, plain output; commits need a user name.
HG_ENV = {"HGPLAIN": "1", "HGRCPATH": "", "HGUSER": "test"}
NODELAY = Path(__file__).with_name("hg_nodelay.py")


def hg(cwd: Path, *args: str) -> str:
    return subprocess.run([hg_executable(), *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env={**os.environ, **HG_ENV}).stdout.strip()


class HgRepo:
    """A real working repository that tests commit to."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        hg(self.path, "init")

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (or, for None, delete) files and commit them; returns the node."""
        write_files(self.path, files)
        hg(self.path, "addremove", "--quiet")
        hg(self.path, "commit", "--quiet", "-m", message)
        return self.head()

    def head(self) -> str:
        return hg(self.path, "log", "-r", ".", "-T", "{node}")

    def branch(self, name: str) -> None:
        """Commits from now on go to the named branch `name`."""
        hg(self.path, "branch", "--quiet", name)

    def update(self, revision: str) -> None:
        hg(self.path, "update", "--quiet", revision)


@contextmanager
def hg_serve(repo: Path, log: Path):
    """Serve `repo` over HTTP; yields its URL. Port 0 lets hg pick a free port, which it
    then reports, so two test runs never race for one."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [hg_executable(), "serve", "-R", str(repo), "-a", "127.0.0.1", "-p", "0",
             "--config", "web.push_ssl=False", "--config", f"extensions.nodelay={NODELAY}"],
            env={**os.environ, **HG_ENV}, stdout=out, stderr=subprocess.STDOUT)
    try:
        port = wait_for(lambda: _bound_port(log) or proc.poll() is not None, timeout=30,
                        what="hg serve to listen")
        assert proc.poll() is None, log.read_text()
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _answers(url), timeout=30, what="hg serve to answer")
        yield url
    finally:
        terminate(proc, grace=5)


def _bound_port(log: Path) -> str | None:
    match = re.search(r"bound to 127\.0\.0\.1:(\d+)", log.read_text())
    return match.group(1) if match else None


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def hg_serve_with_auth(repo: Path, log: Path, auth: tuple[str, str]):
    """Serve `repo` over HTTP behind Basic auth (`hg serve` has none): Mercurial's own hgweb
    WSGI application behind a guard, in a child process; yields its URL."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.servers.hg_serve", str(repo), *auth],
                                env={**os.environ, **HG_ENV}, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = wait_for(lambda: _printed_url(log) or proc.poll() is not None, timeout=30,
                       what="hgweb to listen")
        assert proc.poll() is None, log.read_text()
        yield url
    finally:
        terminate(proc, grace=5)


def _printed_url(log: Path) -> str | None:
    match = re.search(r"^(http://\S+)$", log.read_text(), re.M)
    return match.group(1) if match else None


def _serve_with_auth(repo: str, user: str, password: str) -> None:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from mercurial.hgweb import hgweb

    app = hgweb(repo.encode())
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def guarded(environ, start_response):
        if environ.get("HTTP_AUTHORIZATION") != expected:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="hg"'),
                                                ("Content-Length", "0")])
            return [b""]
        environ["REMOTE_USER"] = user
        return app(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server("127.0.0.1", 0, guarded, server_class=Threading, handler_class=Quiet)
    print(f"http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    # `python -m tests.servers.hg_serve REPO USER PASSWORD`
    _serve_with_auth(*sys.argv[1:4])
