"""A local Git source read in place: its objects are on this machine, so a revision's commit,
trees and blobs are read from the source repository itself (read-only, through GitPython's
`git cat-file --batch`), with no mirror, fetch or pin. Objects are immutable and named by
their id, so reading while someone pushes is safe; the revision is a full id from the event.

Only a repository this reader is sure of: found as local_refs finds it (a `.git` folder or
`gitdir:` file, a linked worktree's common dir; owned by this user), a format and extensions
it vouches for, and no promisor remote (a partial clone would fetch a missing object from
elsewhere). Anything else, and a revision that is not a full id, goes through the mirror.
Replace refs are not followed: upload-pack ignores them too, so the mirror never saw them."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import git

from orchestrator.sources.git_cache import FULL_ID
from orchestrator.sources.local_refs import AskGit, local_repository, vouched_config

# what would make git read an object from elsewhere than the repository's own store
PROMISORS = (b"partialclone", b"promisor")
ENVIRONMENT = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_NO_LAZY_FETCH": "1", "GIT_TERMINAL_PROMPT": "0"}


def repository(url: str) -> str | None:
    """The common dir of the local repository at `url` when its objects can be read in
    place, else None (the mirror reads it)."""
    try:
        common = local_repository(url)
        config = vouched_config(common)
    except AskGit:
        return None
    return None if any(sign in config for sign in PROMISORS) else common


def readable(url: str, revision: str) -> str | None:
    """repository(url) for a revision given as a full id; None for anything else."""
    return repository(url) if FULL_ID.fullmatch(revision) else None


@contextmanager
def opened(common: str) -> Iterator[git.Repo]:
    """The repository, its git commands told where it is (not left to find it from a
    folder) and never to follow replace refs or fetch a missing object."""
    repo = git.Repo(common)
    repo.git.update_environment(GIT_DIR=common, **ENVIRONMENT)
    try:
        yield repo
    finally:
        repo.close()
