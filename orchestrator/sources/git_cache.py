"""What a Git source's mirror holds, and the mirror cut down to what deployments may still
read: the tracked branches' heads and the revisions kept releases were built from (pinned
as refs/sluice/keep/<id>, so the next incremental diff finds its base), each without the
history behind it. The store's garbage collection prunes the rest, so a big file deleted
from the branch leaves the disk once no kept release was built from a commit holding it."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import git

from orchestrator.core.errors import TransientError
from orchestrator.sources.git_trees import commit_tree, text
from orchestrator.sources.vcs_process import run

KEEP = "refs/sluice/keep/"
FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# what the last collection left (refs and shallow commits): the same again, in one pack,
# leaves nothing to prune, and a large mirror is not repacked for nothing
PRUNED_STATE = "sluice-pruned"
# Given to every fetch into a mirror (`git -c`, never written to its config): the fetched pack
# is marked a promisor pack (objects/pack/*.promisor), and git then checks only that the
# heads it fetched arrived in such a pack (connected.c's check for partial clones) instead of
# `rev-list --objects ... --not --all`, which walks the whole tree of the mirror's heads. The
# filter leaves out no blob (2^64-1 bytes); a server that does not filter ignores it.
PROMISED_FETCH = ("remote.origin.promisor=true",
                  "remote.origin.partialclonefilter=blob:limit=18446744073709551615")
log = logging.getLogger("sluice.git")


def reachable(repo: git.Repo, revision: str) -> bool:
    """On a ref of the mirror: refs move only after a fetch completed, so its objects (tree
    and blobs included) are all there — unlike a commit object an interrupted fetch may
    have left behind on its own."""
    try:
        return bool(repo.git.for_each_ref("--contains", revision, "--count=1"))
    except git.GitCommandError:
        return False


def has_commit(repo: git.Repo, revision: str) -> bool:
    return commit_tree(repo, revision) is not None


def tip(repo: git.Repo, revision: str, branch: str) -> bool:
    """reachable(), as a deployment mostly finds it: the revision is the branch's head in
    the mirror, or pinned. Asked of the repository's persistent `git cat-file --batch` (the
    one that reads blobs), so it starts no process."""
    if not FULL_ID.fullmatch(revision):
        return False
    return any(_resolve(repo, ref) == revision for ref in (f"refs/heads/{branch}", KEEP + revision))


def _resolve(repo: git.Repo, ref: str) -> str | None:
    try:
        return text(repo.git.get_object_data(ref)[0])
    except ValueError:      # cat-file answered "missing"
        return None


def held(repo: git.Repo, revision: str, branch: str) -> bool:
    """Whether the mirror holds the revision whole: on one of its refs, or its commit and
    every object of its tree here (a commit no ref reaches any more, or copied by a local
    clone), so no fetch is needed."""
    if tip(repo, revision, branch):
        return True
    if not has_commit(repo, revision):
        return False
    if reachable(repo, revision):
        return True
    try:
        repo.git.rev_list("--objects", "--no-walk", "--quiet", revision)
        return True
    except git.GitCommandError:
        return False


def pin(repo: git.Repo, revision: str) -> None:
    """Keep a revision a snapshot was built from until a collection finds that no kept
    release needs it."""
    repo.git.update_ref(KEEP + revision, revision)


def prune(mirror: Path, branches: set[str], revisions: set[str]) -> bool:
    """Keep the heads of `branches` and those of `revisions` the mirror holds, each without
    its history, and drop every other ref and object (other branches and tags of a mirror
    an older Sluice cloned whole included). Returns whether anything was pruned. Call it
    holding the mirror's lock."""
    clear_stale_locks(mirror)
    with git.Repo(mirror) as repo:
        refs = _refs(mirror)
        pins = {r for r in revisions if FULL_ID.fullmatch(r) and (KEEP + r in refs or reachable(repo, r))}
        kept = {f"refs/heads/{branch}" for branch in branches} | {KEEP + r for r in pins}
        changes = [f"create {KEEP}{r} {r}" for r in sorted(pins) if KEEP + r not in refs]
        changes += [f"delete {ref}" for ref in sorted(refs) if ref not in kept]
        if changes:
            mirror_git(mirror, "update-ref", "--stdin", text_in="".join(c + "\n" for c in changes))
        tips = sorted(kept & {*refs, *(KEEP + r for r in pins)})
        if tips:
            _cut_history(mirror, tips)
        if _state(mirror) == _last_state(mirror) and _one_pack(mirror):
            return False
        forget_promises(mirror)
        mirror_git(mirror, "reflog", "expire", "--expire=now", "--expire-unreachable=now", "--all")
        mirror_git(mirror, "gc", "--quiet", "--prune=now")
        (mirror / PRUNED_STATE).write_text(_state(mirror))
        return True


def forget_promises(mirror: Path) -> None:
    """Make the promisor packs fetches left plain packs again: git's repack keeps every
    object of a promisor pack, reachable or not, so a deleted big file would never leave;
    and the next fetch's check then finds its heads only in the pack it brought."""
    for mark in (mirror / "objects" / "pack").glob("*.promisor"):
        mark.unlink(missing_ok=True)


def _cut_history(mirror: Path, tips: list[str]) -> None:
    """Each tip made a shallow commit: a fetch from the mirror itself with --depth 1
    shortens the history it holds (git's documented way; no object is sent, all are
    here), so older commits and what only they hold are unreachable for gc to prune."""
    mirror_git(mirror, "fetch", "--quiet", "--no-tags", "--depth=1", mirror.resolve().as_uri(),
         *(f"+{ref}:{ref}" for ref in tips))


def _refs(mirror: Path) -> dict[str, str]:
    out = mirror_git(mirror, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ") for line in out.splitlines() if line)


def _state(mirror: Path) -> str:
    shallow = mirror / "shallow"
    return mirror_git(mirror, "for-each-ref") + (shallow.read_text() if shallow.exists() else "")


def _last_state(mirror: Path) -> str | None:
    recorded = mirror / PRUNED_STATE
    return recorded.read_text() if recorded.exists() else None


def _one_pack(mirror: Path) -> bool:
    counts = dict(line.split(": ") for line in mirror_git(mirror, "count-objects", "-v").splitlines())
    return counts["count"] == "0" and int(counts["packs"]) <= 1


def mirror_git(mirror: Path, *args: str, text_in: str | None = None,
               failure: type[Exception] = TransientError) -> str:
    """git ARGS in the mirror: its output, or `failure` naming the command and git's last line."""
    proc = run(["git", *args], cwd=mirror, text_in=text_in, label=f"git {args[0]} in {mirror}")
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise failure(f"git {args[0]} in {mirror} failed: {lines[-1]}")
    return proc.stdout


def clear_stale_locks(mirror: Path) -> None:
    """Lock files a killed git left behind (packed-refs.lock, refs/.../x.lock, shallow.lock):
    git refuses to go on until someone removes them by hand. Only Sluice runs git in this
    mirror, and only under the flock we hold, so any lock file here now is stale."""
    for stale in [*mirror.glob("*.lock"), *(mirror / "refs").rglob("*.lock")]:
        log.warning("removing %s, left by a git process that was killed", stale.relative_to(mirror))
        stale.unlink(missing_ok=True)
