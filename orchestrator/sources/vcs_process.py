"""Running git and hg the one way Sluice does: nothing on stdin, output as text, a cached
clone made whole under a lock, an ssh key handed over without prompts, credentials taken
from the source's settings, and a failure turned into the error that says what to do next."""
from __future__ import annotations

import fcntl
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from orchestrator.config.sources import RepositorySource
from orchestrator.core.errors import AuthenticationFailed, SluiceError, TransientError
from orchestrator.core.urls import sanitize_url


def run(argv: list[str], cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None, label: str = "",
        text_in: str | None = None) -> subprocess.CompletedProcess[str]:
    """Nothing on stdin but `text_in`, so a prompt fails instead of waiting; bytes that are not
    UTF-8 (file names) survive as surrogates. Past `timeout`: TransientError "{label} timed out"."""
    stdin = subprocess.DEVNULL if text_in is None else None
    try:
        return subprocess.run(argv, cwd=cwd, env=env, timeout=timeout, stdin=stdin, input=text_in,
                              capture_output=True, encoding="utf-8", errors="surrogateescape")
    except subprocess.TimeoutExpired:
        raise TransientError(f"{label or ' '.join(argv[:2])} timed out") from None


# What git adds to every failure to reach a repository, whatever the cause: never the news.
BOILERPLATE = ("fatal: Could not read from remote repository.",
               "Please make sure you have the correct access rights", "and the repository exists.")


def failure(label: str, stderr: str, refused: Iterable[str], no_output: str = "no output") -> SluiceError:
    """"{label} failed: {what stderr said last, less git's boilerplate}", URLs without
    credentials: AuthenticationFailed if stderr shows one of the `refused` signs, else
    TransientError (a retry may help)."""
    lines = [bare for bare in map(_bare, stderr.splitlines()) if bare and bare not in BOILERPLATE]
    detail = sanitize_url(lines[-1]) if lines else no_output
    error = AuthenticationFailed if any(sign in stderr for sign in refused) else TransientError
    return error(f"{label} failed: {detail}")


def _bare(line: str) -> str:
    """A line of stderr as git printed it: gitpython quotes it as `  stderr: '...'`."""
    return line.strip().removeprefix("stderr: ").strip("'").strip()


def credentials(config: RepositorySource) -> tuple[str, str] | None:
    """(user, password) when the source has either, else None."""
    if config.username or config.password:
        return config.username or "", config.password or ""
    return None


def ssh_command(key: Path) -> str:
    """How git (GIT_SSH_COMMAND) and hg (ui.ssh) run ssh with the source's key: that key
    only, and never a question (BatchMode) that nobody is there to answer."""
    return f"ssh -i {shlex.quote(str(key))} -o IdentitiesOnly=yes -o BatchMode=yes"


@contextmanager
def locked_clone(path: Path, complete: Path, clone_into: Callable[[Path], object]) -> Iterator[None]:
    """Hold the cached clone at `path` alone (one git or hg at a time in it), making it first
    when `complete`, a file every finished clone has, is missing: cloned aside and renamed
    into place, so a clone that was killed half-way is never taken for one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not complete.exists():
            shutil.rmtree(path, ignore_errors=True)
            aside = path.with_suffix(".cloning")
            shutil.rmtree(aside, ignore_errors=True)
            clone_into(aside)
            aside.rename(path)
        yield


@contextmanager
def idle_clone(path: Path) -> Iterator[bool]:
    """Hold the cached clone at `path` alone if nobody does (True), else False at once: work
    that can wait for another round, as garbage collection can, never waits behind a
    deployment's clone or fetch, nor races it."""
    with open(path.with_suffix(".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
