"""Test helpers: real git repositories, waiting, config files."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

# Real payloads from public projects, copied with their origin and licence (fixtures/README.md),
# so the suite needs nothing outside the repository
FIXTURES = Path(__file__).resolve().parent / "fixtures"

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@localhost",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@localhost"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def write_files(root: Path, files: dict[str, str | bytes | None]) -> None:
    """Write each file under root (folders as needed); None deletes it."""
    for name, content in files.items():
        target = Path(root) / name
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())


class GitRepo:
    """A real working repository that tests commit to."""

    def __init__(self, path: Path, branch: str = "master"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        git(self.path, "init", "--quiet", f"--initial-branch={branch}")

    def commit(self, files: dict[str, str | bytes | None], message: str = "change") -> str:
        """Write (or, for None, delete) files and commit them; returns the commit id."""
        write_files(self.path, files)
        git(self.path, "add", "-A")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def checkout(self, branch: str, create: bool = False) -> None:
        git(self.path, "checkout", "--quiet", *(["-b"] if create else []), branch)

    def through_a_mirror(self) -> GitRepo:
        """Have Sluice read this repository as a remote one, fetching it into a mirror:
        marked a partial clone (every object is here nonetheless), which Sluice does not
        read in place (sources/git_in_place.py)."""
        git(self.path, "config", "core.repositoryformatversion", "1")
        git(self.path, "config", "extensions.partialClone", "origin")
        return self


FUNCTION_APP = {
    "host.json": '{"version": "2.0"}',
    "HttpHello/function.json": '{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}]}',
    "HttpHello/__init__.py": "def main(req):\n    return 'v1'\n",
}
CLOUD_SITE = {"index.html": b"<h1>v1</h1>", "css/site.css": b"body {}", "js/app.js": b"go()"}
# Beside CLOUD_SITE: files the ignore rules keep out of every release, and the rules
# (a .funcignore, itself deployed) that name two of them.
CLOUD_FUNCIGNORE = b"*.log\ndrafts/\n"
CLOUD_NEVER_DEPLOYED = {
    "local.settings.json": b'{"Values": {"AzureWebJobsStorage": "AccountKey=s3cret-key"}}',
    "debug.log": b"noise", "drafts/plan.html": b"<h1>draft</h1>"}


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def write_config(path: Path, data_dir: Path, apps: dict, redis_url: str | None = None,
                 **settings) -> Path:
    doc = {"data_dir": str(data_dir), **settings, "apps": apps}
    if redis_url:
        doc["redis_url"] = redis_url
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


APP_KEYS = ("retry", "keep_releases", "build", "before_switch", "activate", "health", "on_failure", "hosts",
            "rollout", "host_timeout")


def git_app(repo: GitRepo, target: Path, **source) -> dict:
    app_keys = {k: source.pop(k) for k in APP_KEYS if k in source}
    return {"layout": source.pop("layout", "functions"), "target": str(target), **app_keys,
            "source": {"type": "git", "url": str(repo.path), "poll_interval": "1s", **source}}


class Overlap:
    """How many threads are inside `inside()` at once (`now`), and the most there ever were."""

    def __init__(self):
        self.now = self.most = 0
        self._lock = threading.Lock()

    @contextmanager
    def inside(self) -> Iterator[None]:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1
