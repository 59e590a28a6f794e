"""The built-in Git repository of each app: the real `git` CLI against the API served by
uvicorn on a loopback port, real Redis, real worker."""
from __future__ import annotations

import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from orchestrator.access.builtin_git import commit_tree, ensure_repository
from orchestrator.access.credentials import SCRYPT, Verifier, scrypt_hash, set_credentials
from orchestrator.access.login_throttle import LoginThrottle
from orchestrator.api import create_app
from orchestrator.core import keys
from orchestrator.runtime.services import Services
from tests.faults.test_hostile_trees import FILE, commit_on_top
from tests.helpers import FUNCTION_APP, GIT_ENV, git, write_files
from tests.integration.flow import event_types, wait_until_ended
from tests.servers.api_server import serving

PASSWORD = "s3cret-pass"
V2 = {"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"}
# The pusher's git: no prompts, and no user or system config (credential helpers) involved.
CLIENT_ENV = {**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
              "GIT_CONFIG_GLOBAL": os.devnull}


def run_git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=CLIENT_ENV)


def ok_git(cwd: Path, *args: str) -> str:
    done = run_git(cwd, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr




@pytest.fixture
def sluice(workspace, monkeypatch):
    """App `hello` deploys pushes (localgit, user alice); app `other` is manual (user bob);
    app `unset` has no credentials. Yields (services, url_for(app, user, password))."""
    # what `sluice api` does: the hook finds the config through SLUICE_CONFIG
    monkeypatch.setenv("SLUICE_CONFIG", str(workspace.config_path))
    services = workspace.configure({
        "hello": {"target": str(workspace.target("hello")),
                  "source": {"type": "localgit", "branch": "master"}},
        "other": {"target": str(workspace.target("other")), "source": {"type": "manual"}},
        "unset": {"target": str(workspace.target("unset")), "source": {"type": "manual"}}})
    set_credentials(services, "hello", "alice", PASSWORD)
    set_credentials(services, "other", "bob", PASSWORD)
    with serving(services) as base:
        def url_for(app: str, user: str = "alice", password: str = PASSWORD) -> str:
            return base.replace("://", f"://{user}:{password}@") + f"/git/{app}.git"
        yield services, url_for


@pytest.fixture
def work(workspace):
    """A working repository holding a function app, to push from."""
    repo = workspace.repo("work")
    repo.commit(FUNCTION_APP)
    return repo


def test_a_push_to_the_tracked_branch_deploys_exactly_that_revision(sluice, work, workspace):
    services, url_for = sluice
    big = os.urandom(3 * 1024 * 1024)     # over git's 1 MiB post buffer: a chunked request body
    revision = work.commit({"big.bin": big})

    output = ok_git(work.path, "push", url_for("hello"), "HEAD:master")

    deployment_id = re.search(r"remote: sluice: deployment (\S+) of (\w+) queued for hello",
                              output).group(1)
    d = wait_until_ended(services, "hello", deployment_id)
    assert (d.status, d.trigger, d.revision) == ("success", "push", revision)
    assert (workspace.target("hello") / "big.bin").read_bytes() == big
    assert (workspace.target("hello") / "host.json").read_text() == FUNCTION_APP["host.json"]


@pytest.mark.parametrize("app,user,ref,says", [
    ("hello", "alice", "feature",
     "refs/heads/feature stored, not deployed (hello deploys pushes to master)"),
    ("other", "bob", "master", "refs/heads/master stored; other deploys from its manual source"),
], ids=["another-branch", "app-on-another-source"])
def test_a_push_that_does_not_move_a_deployed_branch_is_stored_but_deploys_nothing(
        sluice, work, app, user, ref, says):
    services, url_for = sluice

    output = ok_git(work.path, "push", url_for(app, user), f"HEAD:{ref}")

    assert f"remote: sluice: {says}" in output
    assert f"{work.head()}\trefs/heads/{ref}" in ok_git(work.path, "ls-remote", url_for(app, user))
    assert event_types(services, app) == ["CredentialsChanged"]


def test_clone_and_pull_download_the_code(sluice, work, workspace):
    _, url_for = sluice
    ok_git(work.path, "push", url_for("hello"), "HEAD:master")

    ok_git(workspace.root, "clone", url_for("hello"), "copy")
    copy = workspace.root / "copy"
    assert checked_out(copy) == FUNCTION_APP
    work.commit(V2)
    ok_git(work.path, "push", url_for("hello"), "HEAD:master")
    ok_git(copy, "pull", "--ff-only")
    assert (copy / "HttpHello/__init__.py").read_text() == V2["HttpHello/__init__.py"]
    assert ok_git(copy, "rev-parse", "HEAD").strip() == work.head()


def test_a_push_whose_tree_names_a_file_twice_is_refused_and_the_pusher_told_why(
        sluice, work, workspace):
    services, url_for = sluice
    repo = ensure_repository(services.config, "hello")
    run_git(repo, "config", "--unset", "receive.fsckObjects")   # as an earlier Sluice made it
    duplicated = commit_on_top(work.path, [(FILE, b"host.json", b"{}")])

    done = run_git(work.path, "push", url_for("hello"), f"{duplicated}:refs/heads/master")

    assert done.returncode != 0
    assert re.search(r"remote: error: object \w+: duplicateEntries: contains duplicate file "
                     r"entries", done.stderr), done.stderr
    assert "[remote rejected] " in done.stderr
    assert ok_git(work.path, "ls-remote", url_for("hello")) == ""
    assert event_types(services, "hello") == ["CredentialsChanged"]
    assert ok_git(repo, "config", "receive.fsckObjects").strip() == "true"


def test_a_clone_whose_request_git_compresses_still_downloads_every_branch(sluice, work, workspace):
    """Forty wants make git gzip the request body (Content-Encoding: gzip)."""
    _, url_for = sluice
    tree_id = git(work.path, "rev-parse", "HEAD^{tree}")
    branches = {f"b{i}": git(work.path, "commit-tree", tree_id, "-p", "HEAD", "-m", f"b{i}")
                for i in range(40)}
    subprocess.run(["git", "update-ref", "--stdin"], cwd=work.path, check=True, text=True,
                   input="".join(f"create refs/heads/{b} {c}\n" for b, c in branches.items()))
    ok_git(work.path, "push", url_for("other", "bob"), "refs/heads/*:refs/heads/*")

    ok_git(workspace.root, "clone", "--mirror", url_for("other", "bob"), "mirror.git")

    refs = ok_git(workspace.root / "mirror.git", "for-each-ref",
                  "--format=%(refname:short) %(objectname)")
    cloned = dict(line.split() for line in refs.splitlines())
    assert {b: c for b, c in cloned.items() if b != "master"} == branches


def test_a_wrong_password_a_wrong_user_an_unknown_app_and_one_without_credentials_get_one_401(
        sluice, workspace):
    services, url_for = sluice
    refused = [url_for("hello", password="wrong-pass1"), url_for("hello", user="mallory"),
               url_for("nope"), url_for("unset"), url_for("hello", user="", password="")]

    answers = [_answer(httpx.get(url + "/info/refs?service=git-upload-pack")) for url in refused]
    for app in ("hello", "nope", "unset"):       # not slowed down by the failures above
        Verifier(services).throttle.succeeded("127.0.0.1", app)
    attempts = [run_git(workspace.root, "ls-remote", url) for url in refused[:3]]

    assert answers == [(401, 'Basic realm="sluice"', "authentication required\n")] * 5
    for attempt in attempts:
        assert attempt.returncode != 0 and "Authentication failed" in attempt.stderr


def test_one_apps_credentials_do_not_open_another_apps_repository(sluice, workspace):
    _, url_for = sluice
    ok_git(workspace.root, "ls-remote", url_for("hello", "alice"))
    attempt = run_git(workspace.root, "clone", url_for("other", "alice"), "stolen")
    assert attempt.returncode != 0 and "Authentication failed" in attempt.stderr
    assert not (workspace.root / "stolen").exists()


def test_repeated_failures_from_one_address_slow_its_answers_until_a_login_succeeds(sluice):
    services, url_for = sluice
    wrong, right = url_for("hello", password="wrong-pass1"), url_for("hello")

    def timed(url: str) -> tuple[int, float]:
        started = time.monotonic()
        status = httpx.get(url + "/info/refs?service=git-upload-pack").status_code
        return status, time.monotonic() - started

    def failures() -> int:
        return int(services.redis.hget(keys.login_attempts("127.0.0.1", "hello"), "failures") or 0)

    free = [timed(wrong) for _ in range(3)]
    held = timed(wrong)
    counted = failures()
    after_success = [timed(right), timed(right)]

    # the answers are held at least as long as the turns say (how much longer is the machine's)
    assert [status for status, _ in free] == [401] * 3 and counted == 4
    assert held[0] == 401 and held[1] >= 0.5
    assert after_success[0][0] == 200 and after_success[0][1] >= 1.0     # held too, then reset
    assert after_success[1][0] == 200 and failures() == 0


def test_guesses_sent_at_once_beyond_their_turns_get_429_with_retry_after_and_healthz_answers(
        workspace):
    services = _guessed_at(workspace)
    hashed = []
    api = create_app(services)
    # the real turns' schedule, in tenths of its seconds
    api.state.git_verifier = Verifier(services, hasher=_recording(hashed), throttle=LoginThrottle(
        services.redis, services.clock, first_delay=0.05, max_delay=0.8))
    with serving(services, api) as base, ThreadPoolExecutor(20) as pool:
        url = f"{base}/git/hello.git/info/refs?service=git-upload-pack"
        guesses = [pool.submit(httpx.get, url, auth=("alice", "wrong-pass1"), timeout=30)
                   for _ in range(20)]
        health = [httpx.get(f"{base}/healthz").status_code for _ in range(5)]
        answers = [guess.result() for guess in guesses]

    refused = [answer for answer in answers if answer.status_code == 429]
    assert sorted(answer.status_code for answer in answers) == [401] * len(hashed) + [429] * len(refused)
    assert len(hashed) <= 7 and len(refused) >= 13     # 3 free turns and 4 spaced out
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in refused)
    assert health == [200] * 5


def test_an_unknown_app_is_answered_after_the_same_hash_as_a_known_one(workspace):
    services = _guessed_at(workspace)
    hashed = []
    api = create_app(services)
    api.state.git_verifier = Verifier(services, hasher=_recording(hashed))
    with serving(services, api) as base:
        statuses = [httpx.get(f"{base}/git/{app}.git/info/refs?service=git-upload-pack",
                              auth=("alice", "wrong-pass1")).status_code
                    for app in ("hello", "nope")]

    assert statuses == [401, 401]
    assert [(password, len(salt), params) for password, salt, params in hashed] \
        == [("wrong-pass1", 16, SCRYPT)] * 2


def _guessed_at(workspace) -> Services:
    services = workspace.configure({"hello": {"target": str(workspace.target("hello")),
                                              "source": {"type": "manual"}}})
    set_credentials(services, "hello", "alice", PASSWORD)
    return services


def _recording(hashed: list):
    def hasher(password: str, salt: bytes, params: dict) -> bytes:
        hashed.append((password, salt, params))
        return scrypt_hash(password, salt, params)
    return hasher


def test_commit_tree_then_clone_yields_exactly_the_directorys_files(sluice, workspace):
    services, url_for = sluice
    folder = workspace.root / "imported"
    write_files(folder, {"index.html": "<h1>one</h1>", "old.txt": "gone soon",
                         "bin/run.sh": "#!/bin/sh\necho hi\n"})
    (folder / "bin/run.sh").chmod(0o755)
    first = commit_tree(services.config, "other", folder, "Import one")
    write_files(folder, {"old.txt": None, "index.html": "<h1>two</h1>", "build/out.js": "x()",
                         ".gitignore": "build/\n"})
    second = commit_tree(services.config, "other", folder, "Import two")

    ok_git(workspace.root, "clone", url_for("other", "bob"), "copy")
    copy = workspace.root / "copy"

    assert checked_out(copy) == {"index.html": "<h1>two</h1>", "bin/run.sh": "#!/bin/sh\necho hi\n",
                     "build/out.js": "x()", ".gitignore": "build/\n"}
    assert os.access(copy / "bin/run.sh", os.X_OK)
    assert ok_git(copy, "log", "--format=%H %an %s").splitlines() == [
        f"{second} Sluice Import two", f"{first} Sluice Import one"]


def test_ensure_repository_is_idempotent_when_called_at_once_from_many_threads(workspace):
    services = workspace.configure({"hello": {"target": str(workspace.target("hello")),
                                              "source": {"type": "localgit", "branch": "main"}}})
    with ThreadPoolExecutor(8) as pool:
        paths = set(pool.map(lambda _: ensure_repository(services.config, "hello"), range(8)))

    (repo,) = paths
    assert ok_git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert ok_git(repo, "config", "http.receivepack").strip() == "true"
    assert ok_git(repo, "config", "receive.fsckObjects").strip() == "true"
    assert os.access(repo / "hooks" / "post-receive", os.X_OK)
    assert sorted(p.name for p in repo.parent.iterdir()) == ["hello.git"]


def checked_out(root: Path) -> dict[str, str]:
    """A clone's files and their text, without .git."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != ".git"}


def _answer(response: httpx.Response) -> tuple[int, str, str]:
    return response.status_code, response.headers.get("www-authenticate"), response.text
