"""Real Mercurial repositories and a real `hg serve` on a free loopback port."""
from __future__ import annotations

import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import httpx

from orchestrator.processes import terminate
from orchestrator.sources.hg import hg_executable
from tests.helpers import wait_for, write_files

# No user or system hgrc, plain output; commits need a user name.
HG_ENV = {"HGPLAIN": "1", "HGRCPATH": "", "HGUSER": "test"}


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
             "--config", "web.push_ssl=False"],
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
