"""External Git repositories: head checks (a local repository's refs read in-process by
local_refs.py, else `ls-remote`), a cached bare mirror of the tracked branch's head (no
history: git_cache.py keeps what kept releases need), git blob ids as aliases so files
already in the store are neither read nor hashed again."""
from __future__ import annotations

import hashlib
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import git
from gitdb.util import hex_to_bin

from orchestrator.config.sources import RepositorySource
from orchestrator.core.errors import PermanentError, RevisionNotFound, SluiceError
from orchestrator.core.files import write_whole
from orchestrator.core.urls import sanitize_url
from orchestrator.sources.base import Change, SnapshotWriter, strip_prefix
from orchestrator.sources.git_cache import (
    FULL_ID,
    KEEP,
    PROMISED_FETCH,
    clear_stale_locks,
    forget_promises,
    has_commit,
    held,
    pin,
    reachable,
    tip,
)
from orchestrator.sources.git_commits import commit_details, commit_object
from orchestrator.sources.git_fsck import Refused, checked
from orchestrator.sources.git_http import remote_head
from orchestrator.sources.git_in_place import opened, readable
from orchestrator.sources.git_trees import Malformed, Reader, Unreadable, commit_tree, diff_trees, tree_reader
from orchestrator.sources.local_refs import AskGit, local_head, local_repository
from orchestrator.sources.vcs_process import credentials, failure, locked_clone, run, ssh_command

ALIAS_KIND = "git-blob"
AUTH_REFUSED = ("Authentication failed", "could not read Username", "could not read Password",
                "returned error: 403", "Permission denied (publickey")
FILE_MODES = ("100644", "100755")
MIRROR_SETTINGS = {
    # packs arrive whole (index last); loose objects of a killed fetch would not
    "fetch.unpackLimit": 1,
    # a malformed object (a tree naming a file twice, a '..' entry...) fails the fetch,
    # naming it, rather than reaching a snapshot (git fsck's checks, as a push to GitHub has)
    "transfer.fsckObjects": True,
    # only Sluice's collection prunes, knowing which commits kept releases need; git's own
    # would drop the live revision (no ref reaches it once the branch moved on) in two weeks
    "gc.auto": 0,
}
# a depth no history reaches: the branch's whole history (git's --unshallow, which a
# mirror that is not shallow refuses)
WHOLE_HISTORY = 2147483647
FSCK_ERROR = re.compile(r"error: object ([0-9a-f]{40,64}): (\w+): ([^\n]*)")
# what clone --branch and fetch of refs/heads/B say when the server has no branch B
NO_BRANCH = re.compile(r"Remote branch \S+ not found|couldn't find remote ref refs/heads/")
log = logging.getLogger("sluice.git")


class GitSource:
    def __init__(self, config: RepositorySource, cache_dir: Path):
        self.config = config
        self.mirror = Path(cache_dir) / (hashlib.sha256(config.url.encode()).hexdigest()[:24] + ".git")

    def describe(self) -> str:
        return self.config.describe()

    def head(self) -> str:
        if self.config.url.startswith(("http://", "https://")):
            return remote_head(self.config.url, self.config.branch, credentials(self.config))
        try:
            sha = local_head(self.config.url, self.config.branch)
        except AskGit as reason:
            log.debug("asking git ls-remote for %s: %s", sanitize_url(self.config.url), reason)
            sha = self._ls_remote_head()
        if sha is None:
            raise RevisionNotFound(f"branch {self.config.branch!r} not found in "
                                   f"{sanitize_url(self.config.url)}")
        return sha

    def _ls_remote_head(self) -> str | None:
        ref = f"refs/heads/{self.config.branch}"
        out = self._git(git.cmd.Git(), "ls_remote", self.config.url, ref)
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        return None

    def latest(self, cursor: str | None) -> Change | None:
        sha = self.head()
        return None if sha == cursor else Change(revision=sha, cursor=sha)

    def fetch(self, revision: str, into: SnapshotWriter) -> None:
        if (common := readable(self.config.url, revision)) is not None:
            with opened(common) as repo:
                self._read_in_place(repo, revision, into)
            return
        with self._locked_mirror() as repo:
            whole = held(repo, revision, self.config.branch)
            if not whole:
                self._fetch(repo, revision)
                whole = held(repo, revision, self.config.branch)
            if not whole and not has_commit(repo, revision):
                raise RevisionNotFound(f"revision {revision} not found in "
                                       f"{sanitize_url(self.config.url)}")
            self._write_tree(repo, revision, into)
            commit = commit_object(repo, revision)
            if commit is not None:
                into.describe_commit(*commit_details(commit))
            if whole:
                pin(repo, revision)

    def reads_in_place(self) -> bool:
        """Whether deployments read the source repository itself, needing no mirror."""
        return readable(self.config.url, "0" * 40) is not None

    def _read_in_place(self, repo: git.Repo, revision: str, into: SnapshotWriter) -> None:
        """A local source's revision read from its own objects, each tree the snapshot
        takes checked as git fsck checks what a mirror fetches. The tracked branch must be
        there, as a fetch of it would need it (a ref file read, no process)."""
        self.head()
        commit = commit_object(repo, revision)
        if commit is None:
            raise RevisionNotFound(f"revision {revision} not found in {sanitize_url(self.config.url)}")
        try:
            self._write_tree(repo, revision, into, checked(tree_reader(repo)))
        except Refused as exc:
            raise PermanentError(f"reading {revision[:12]} in {sanitize_url(self.config.url)}: the "
                                 f"repository holds a malformed object, refused: {exc.tree}: {exc.detail} "
                                 f"(git fsck {exc.check}); rewrite the history that holds it") from None
        into.describe_commit(*commit_details(commit))

    def _fetch(self, repo: git.Repo, revision: str) -> None:
        """The tracked branch's head without its history (a local branch that moved on from
        the mirror's head: the commits since); a revision that is not its head (a deployment
        queued before the branch moved on) by its id, as protocol v2 and the big hosts serve
        any commit, or else with the branch's whole history."""
        branch = f"refs/heads/{self.config.branch}"
        try:
            self._fetch_into(repo, f"+{branch}:{branch}", None if self._moved_on_locally() else 1)
            if not FULL_ID.fullmatch(revision) or tip(repo, revision, self.config.branch) \
                    or reachable(repo, revision):
                return
            try:
                self._fetch_into(repo, f"+{revision}:{KEEP}{revision}", 1)
            except SluiceError as exc:      # "not our ref": a server that serves only its refs
                log.info("fetching %s by its id failed (%s): fetching the whole history of %s",
                         revision[:12], exc, self.config.branch)
                self._fetch_into(repo, f"+{branch}:{branch}", WHOLE_HISTORY)
        finally:
            forget_promises(self.mirror)

    def _fetch_into(self, repo: git.Repo, refspec: str, depth: int | None) -> None:
        """git fetch from origin, checking that the heads arrived, not walking their trees
        (git_cache.PROMISED_FETCH): the cost of a fetch is the change's, not the tree's."""
        deepen = [f"--depth={depth}"] if depth else []
        self._git(repo.git(c=list(PROMISED_FETCH)), "fetch", "--quiet", "--no-tags",
                  "--no-auto-maintenance", *deepen, "origin", refspec)

    def _moved_on_locally(self) -> bool:
        """Whether the source is a local repository, not shallow, whose branch descends from
        the mirror's head of it: then a fetch without --depth sends just the commits since,
        where a shallow one makes upload-pack walk the whole tree. Unsure, or after a force
        push: no (--depth 1 costs the tree, never the history)."""
        try:
            source = local_repository(self.config.url)
            ours = local_head(str(self.mirror), self.config.branch)
        except AskGit:
            return False
        if ours is None or Path(source, "shallow").exists():
            return False
        proc = run(["git", "--git-dir", source, "merge-base", "--is-ancestor", ours,
                    f"refs/heads/{self.config.branch}"], label="git merge-base")
        return proc.returncode == 0

    def _write_tree(self, repo: git.Repo, revision: str, into: SnapshotWriter,
                    read_new: Reader | None = None) -> None:
        """`read_new`: the new revision's trees are read in-process through it, the whole
        tree too (a mirror's whole tree is listed by `git ls-tree`)."""
        changes = self._listing(repo, revision, into, read_new)
        known = into.known(ALIAS_KIND, {e[2] for e in changes if e[0] in FILE_MODES})
        try:
            for mode, path, blob_id in changes:
                if mode == "120000":
                    into.add_symlink(path, _blob(repo, blob_id).read().decode())
                elif mode not in FILE_MODES:
                    into.remove(path)           # deleted, or now a submodule (not deployed)
                elif blob_id in known:
                    into.add_known(path, known[blob_id], executable=mode == "100755")
                else:
                    into.add_stream(path, _blob(repo, blob_id),
                                    executable=mode == "100755", alias=(ALIAS_KIND, blob_id))
        except Unreadable as exc:
            raise PermanentError(f"git cannot read {revision[:12]} in {sanitize_url(self.config.url)}: "
                                 f"{exc}") from None

    def _listing(self, repo: git.Repo, revision: str, into: SnapshotWriter,
                 read_new: Reader | None) -> list[tuple[str, str, str]]:
        """The entries to write: what changed since the writer's base, or all of them."""
        try:
            changes = self._changes_since_base(repo, revision, into, read_new)
            if changes is not None:
                return changes
            into.drop_base()
            if read_new is None:
                entries = _ls_tree(repo, revision, self.config.path)
            else:
                entries = diff_trees(tree_reader(repo), None, commit_tree(repo, revision) or "",
                                     self.config.path, read_new)
        except (git.GitCommandError, Unreadable, Malformed) as exc:    # the objects are here: git cannot parse them
            raise PermanentError(f"git cannot read the tree of {revision[:12]}: "
                                 f"{_last_line(exc) if isinstance(exc, git.GitCommandError) else exc}") from None
        if not entries and self.config.path:
            raise RevisionNotFound(f"folder {self.config.path!r} does not exist at "
                                   f"revision {revision[:12]}")
        return entries

    def _changes_since_base(self, repo: git.Repo, revision: str, into: SnapshotWriter,
                            read_new: Reader | None) -> list[tuple[str, str, str]] | None:
        """What changed between the writer's base revision and `revision`, or None when the
        whole tree must be listed (no base, base unknown here or some of its trees gone, the
        ignore rules changed, or a tree the comparison went through is malformed)."""
        base = into.base_revision
        trees = (commit_tree(repo, base), commit_tree(repo, revision)) if base else (None, None)
        if trees[0] is None or trees[1] is None:
            return None
        try:
            changes = diff_trees(tree_reader(repo), trees[0], trees[1], self.config.path, read_new)
        except Unreadable:
            return None
        except Malformed as exc:
            log.warning("tree %s has duplicate or unsorted entries (git fsck: duplicateEntries,"
                        " treeNotSorted); listing every file of %s instead of the changes",
                        exc.tree, revision[:12])
            return None
        if any(path == ".funcignore" for _, path, _ in changes):
            return None
        return changes

    @contextmanager
    def _locked_mirror(self):
        with locked_clone(self.mirror, self.mirror / "HEAD", self._clone_mirror):
            clear_stale_locks(self.mirror)
            repo = git.Repo(self.mirror)
            settings = repo.config_reader()
            for key, value in MIRROR_SETTINGS.items():
                section, _, option = key.partition(".")
                if settings.get_value(section, option, "") != value:     # a mirror made before
                    repo.git.config(key, str(value).lower())
            try:
                yield repo
            finally:
                repo.close()

    def _clone_mirror(self, into: Path) -> None:
        """The tracked branch alone, its head without history (a local path is copied whole,
        as git clones one; the next collection cuts it down)."""
        settings = [f"--config={key}={str(value).lower()}" for key, value in MIRROR_SETTINGS.items()]
        self._git(git.cmd.Git(), "clone", "--bare", "--quiet", "--no-tags", "--single-branch",
                  f"--branch={self.config.branch}", "--depth=1", *settings, self.config.url, str(into))

    def _environment(self) -> dict[str, str]:
        """Credentials reach git through its askpass hook and ssh command, never through
        URLs or arguments (which other users can see in the process list)."""
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if auth := credentials(self.config):
            env.update(GIT_ASKPASS=str(_askpass(self.mirror.parent)),
                       SLUICE_GIT_USERNAME=auth[0], SLUICE_GIT_PASSWORD=auth[1])
        if self.config.ssh_key:
            env["GIT_SSH_COMMAND"] = ssh_command(self.config.ssh_key)
        return env

    def _git(self, runner, command: str, *args) -> str:
        try:
            with runner.custom_environment(**self._environment()):
                return getattr(runner, command)(*args)
        except git.GitCommandError as exc:
            label = f"git {command.replace('_', '-')} {sanitize_url(self.config.url)}"
            if refused := FSCK_ERROR.search(exc.stderr or ""):
                oid, check, detail = refused.groups()
                raise PermanentError(f"{label}: the repository holds a malformed object, "
                                     f"refused: {oid}: {detail} (git fsck "
                                     f"{check}); rewrite the history that holds it") from None
            if NO_BRANCH.search(exc.stderr or ""):    # deleted or renamed: fetching again won't help
                raise RevisionNotFound(f"branch {self.config.branch!r} not found in "
                                       f"{sanitize_url(self.config.url)} ({label})") from None
            raise failure(label, exc.stderr or "", AUTH_REFUSED, str(exc.status)) from None


ASKPASS = """#!/bin/sh
case "$1" in [Uu]sername*) printf '%s\\n' "$SLUICE_GIT_USERNAME" ;; *) printf '%s\\n' "$SLUICE_GIT_PASSWORD" ;; esac
"""


def _askpass(folder: Path) -> Path:
    script = folder / "askpass.sh"
    if not script.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_whole(script, ASKPASS, 0o700)
    return script


def _ls_tree(repo: git.Repo, revision: str, subfolder: str) -> list[tuple[str, str, str]]:
    """(mode, path relative to the subfolder, blob id) of every file and symlink."""
    args = ["-r", "-z", "--full-tree", revision]
    if subfolder:
        args += ["--", subfolder + "/"]
    out = repo.git.ls_tree(*args, strip_newline_in_stdout=False)
    entries = []
    for record in filter(None, out.split("\0")):
        meta, _, path = record.partition("\t")
        mode, kind, blob_id = meta.split(" ")
        relative = strip_prefix(path, subfolder)
        if kind == "blob" and relative:
            entries.append((mode, relative, blob_id))
    return entries


def _blob(repo: git.Repo, blob_id: str) -> IO[bytes]:
    try:
        return repo.odb.stream(hex_to_bin(blob_id))
    except ValueError:      # cat-file answered "missing"
        raise Unreadable(f"blob {blob_id} is missing") from None


def _last_line(exc: git.GitCommandError) -> str:
    lines = [line.strip() for line in str(exc.stderr or "").splitlines() if line.strip()]
    return lines[-1].removeprefix("stderr: ").strip("'") if lines else f"exit code {exc.status}"
