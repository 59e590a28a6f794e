"""Each app's built-in Git repository, data_dir/repos/APP.git: a bare repository that the API
serves at /git/APP.git (orchestrator/api/git_http.py) and that `sluice import` commits to.

Every configured app has one. Only an app whose source is `localgit` deploys what is pushed
to it (through the post-receive hook, orchestrator/triggers/git_hooks.py); for the others it stores.
"""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from orchestrator.config.settings import SluiceConfig, builtin_repository
from orchestrator.core.errors import ConfigError, SluiceError
from orchestrator.core.files import write_whole
from orchestrator.sources.vcs_process import run

IDENTITY = {"GIT_AUTHOR_NAME": "Sluice", "GIT_AUTHOR_EMAIL": "sluice@localhost",
            "GIT_COMMITTER_NAME": "Sluice", "GIT_COMMITTER_EMAIL": "sluice@localhost"}


class GitCommandFailed(SluiceError):
    pass


def ensure_repository(config: SluiceConfig, app: str) -> Path:
    """The app's built-in repository, created on first use. Safe to call from several
    processes at once: a repository is built aside and renamed into place whole."""
    if app not in config.apps:
        raise ConfigError(f"unknown app {app!r}")
    path = builtin_repository(config.data_dir, app)
    if not (path / "HEAD").exists():
        _create(path, app, _default_branch(config, app))
    _install_hook(path, app)
    _check_pushes(path)
    return path


def commit_tree(config: SluiceConfig, app: str, directory: Path, message: str,
                branch: str = "master") -> str:
    """Commit every file under `directory` as the new tip of `branch` (its first commit if the
    branch does not exist yet); returns the commit id. No working tree, no hooks: the commit
    is stored, not deployed."""
    repo = ensure_repository(config, app)
    ref = f"refs/heads/{branch}"
    with tempfile.TemporaryDirectory(prefix="sluice-index-") as scratch:
        env = {**os.environ, **IDENTITY, "GIT_DIR": str(repo),
               "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        work_tree = str(Path(directory).resolve())
        # --force: the app's own .gitignore must not keep its files out of the commit
        _git({**env, "GIT_WORK_TREE": work_tree}, "add", "--all", "--force", cwd=work_tree)
        tree = _git(env, "write-tree")
        parent = _git(env, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        parents = ["-p", parent] if parent else []
        # a user's commit.gpgSign must not make an unattended commit ask for a key
        commit = _git(env, "commit-tree", "--no-gpg-sign", *parents, "-m", message, tree)
        # compare-and-swap: a commit made meanwhile by someone else is never lost
        _git(env, "update-ref", "-m", f"sluice: {message}", ref, commit, parent)
    return commit


def _default_branch(config: SluiceConfig, app: str) -> str:
    """What a clone checks out: the deployed branch for localgit, else where imports go."""
    source = config.apps[app].source
    return source.branch if source.type == "localgit" else "master"


def _create(path: Path, app: str, branch: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.parent / f".{app}.{secrets.token_hex(4)}.building"
    try:
        _git(dict(os.environ), "init", "--quiet", "--bare", f"--initial-branch={branch}",
             str(building))
        # http-backend refuses pushes unless told, even from an authenticated user
        _git({**os.environ, "GIT_DIR": str(building)}, "config", "http.receivepack", "true")
        _check_pushes(building)
        _install_hook(building, app)
        os.rename(building, path)
    except OSError:
        if not (path / "HEAD").exists():
            raise
        # another process won the race; its repository is as good as ours
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _check_pushes(repo: Path) -> None:
    """A push holding a malformed object (a tree naming a file twice, a '..' entry...) is
    refused whole and the pusher told which (git fsck's checks, as GitHub makes them): once
    stored, such a tree could deploy other files than `git checkout` shows. Repositories
    created before get the setting the first time they are opened."""
    env = {**os.environ, "GIT_DIR": str(repo)}
    for _ in range(3):      # another process setting it at once holds config.lock a moment
        if _git(env, "config", "--get", "receive.fsckObjects", check=False) == "true":
            return
        _git(env, "config", "receive.fsckObjects", "true", check=False)
    _git(env, "config", "receive.fsckObjects", "true")


def _install_hook(repo: Path, app: str) -> None:
    """(Re)write the post-receive hook when it differs, e.g. after the venv moved."""
    hook = repo / "hooks" / "post-receive"
    script = ("#!/bin/sh\n"
              "# Written by Sluice: a push that moves the tracked branch queues a deployment.\n"
              f"exec {shlex.quote(sys.executable)} -m orchestrator.triggers.git_hooks post-receive "
              f"{shlex.quote(app)}\n")
    try:
        if hook.read_text() == script:
            return
    except OSError:
        pass
    hook.parent.mkdir(exist_ok=True)
    write_whole(hook, script, 0o755)


def _git(env: dict, *args: str, check: bool = True, cwd: str | None = None) -> str:
    done = run(["git", *args], env=env, cwd=cwd)
    if check and done.returncode != 0:
        raise GitCommandFailed(f"git {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip() if done.returncode == 0 else ""
