"""A local Git source is read in place (issue 16): the revision's commit, trees and blobs come
from the source repository itself, with no mirror, fetch or pin; what the mirror gave still
holds. Real git throughout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.config.sources import GitSourceConfig
from orchestrator.core.errors import PermanentError, RevisionNotFound
from orchestrator.releases.snapshots import Base, Snapshot, SnapshotStore
from orchestrator.sources.cache_gc import collect_caches
from orchestrator.sources.git import GitSource
from tests.faults.test_hostile_trees import DIR, FILE, commit_on_top, nested
from tests.helpers import GitRepo, git, git_app
from tests.integration.test_git_cache import Builds, configured


class Built:
    """Snapshots of one source URL, as the worker builds them (a base: its changes)."""

    def __init__(self, url: str, tmp_path: Path, **settings):
        self.store = SnapshotStore(tmp_path / "store")
        self.cache = tmp_path / "cache"
        self.source = GitSource(GitSourceConfig(type="git", url=url, **settings), self.cache)

    def __call__(self, revision: str, base: tuple[str, Snapshot] | None = None) -> Snapshot:
        writer = self.store.builder(Base(base[0], base[1].manifest) if base else None)
        self.source.fetch(revision, writer)
        return writer.seal()

    def files(self, snapshot: Snapshot) -> dict[str, bytes]:
        return {p: self.store.read_blob(e.sha256) for p, e in snapshot.manifest.files.items()}


def no_mirror(cache: Path) -> bool:
    return not cache.exists() or not list(cache.glob("*.git"))


@pytest.mark.parametrize("subfolder", ["", "web"])
def test_a_local_change_is_read_in_place_without_a_mirror_and_equals_a_full_listing(tmp_path, subfolder):
    repo = GitRepo(tmp_path / "repo")
    prefix = f"{subfolder}/" if subfolder else ""
    first = repo.commit({f"{prefix}index.html": "v1", f"{prefix}run.sh": "#!/bin/sh\n", "outside.txt": "o",
                         f"{prefix}d/a.txt": "a", f"{prefix}d/b.txt": "b"})
    os.chmod(repo.path / prefix / "run.sh", 0o755)
    os.symlink("index.html", repo.path / prefix / "home.html")
    first = repo.commit({})
    build = Built(str(repo.path), tmp_path, path=subfolder)
    live = build(first)
    head = repo.commit({f"{prefix}d/a.txt": "a2", f"{prefix}d/b.txt": None, "outside.txt": "o2"})

    snapshot = build(head, (first, live))

    assert snapshot.incremental and snapshot.manifest == build(head).manifest
    assert build.files(snapshot)["d/a.txt"] == b"a2" and "d/b.txt" not in snapshot.manifest.files
    assert snapshot.manifest.files["run.sh"].executable and snapshot.manifest.links == {"home.html": "index.html"}
    assert no_mirror(build.cache)


def test_a_funcignore_change_lists_the_whole_tree_in_place(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    first = repo.commit({"index.html": "v1", "notes.log": "n"})
    build = Built(str(repo.path), tmp_path)
    live = build(first)
    head = repo.commit({".funcignore": "*.log\n"})

    snapshot = build(head, (first, live))

    assert not snapshot.incremental and set(snapshot.manifest.files) == {"index.html", ".funcignore"}


def test_a_revision_gone_from_the_source_is_not_found_and_a_base_gone_means_a_full_listing(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    root = repo.commit({"index.html": "v1"})
    gone = repo.commit({"index.html": "v2", "extra.txt": "x"})
    build = Built(str(repo.path), tmp_path)
    live = build(gone)
    git(repo.path, "reset", "--quiet", "--hard", root)          # a force push, then git gc
    head = repo.commit({"index.html": "v3"})
    git(repo.path, "reflog", "expire", "--expire=now", "--all")
    git(repo.path, "gc", "--quiet", "--prune=now")

    with pytest.raises(RevisionNotFound, match=f"revision {gone} not found in {repo.path}"):
        build(gone)
    snapshot = build(head, (gone, live))
    assert not snapshot.incremental and build.files(snapshot) == {"index.html": b"v3"}


@pytest.mark.parametrize("kind", ["shallow clone", "shared clone (alternates)", "linked worktree", "bare"])
def test_a_local_repository_of_any_layout_is_read_in_place(tmp_path, kind):
    origin = GitRepo(tmp_path / "origin")
    first = origin.commit({"index.html": "v1", "a.txt": "a"})
    origin.commit({"index.html": "v2"})
    url = tmp_path / "source"
    if kind == "shallow clone":
        git(tmp_path, "clone", "--quiet", "--depth=1", origin.path.as_uri(), str(url))
    elif kind == "shared clone (alternates)":
        git(tmp_path, "clone", "--quiet", "--shared", str(origin.path), str(url))
    elif kind == "linked worktree":
        git(origin.path, "worktree", "add", "--quiet", "-b", "side", str(url))
    else:
        git(tmp_path, "clone", "--quiet", "--bare", str(origin.path), str(url))
    head = git(url, "rev-parse", "HEAD")
    build = Built(str(url), tmp_path)

    snapshot = build(head, (first, build(first))) if kind != "shallow clone" else build(head)

    assert build.files(snapshot) == {"index.html": b"v2", "a.txt": b"a"}
    assert snapshot.incremental == (kind != "shallow clone") and no_mirror(build.cache)


def test_a_partial_clone_is_read_through_a_mirror_as_before(tmp_path):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    build = Built(str(repo.path), tmp_path)

    snapshot = build(repo.commit({"index.html": "v1"}))

    assert build.files(snapshot) == {"index.html": b"v1"} and not no_mirror(build.cache)


def test_replace_refs_in_the_source_are_not_followed_as_the_mirrors_fetch_did_not(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    deployed = repo.commit({"index.html": "v1"})
    other = repo.commit({"index.html": "replacement"})
    git(repo.path, "replace", deployed, other)
    build = Built(str(repo.path), tmp_path)

    assert build.files(build(deployed)) == {"index.html": b"v1"}


@pytest.mark.parametrize("hostile,check", [
    ([nested("../escaped.txt", FILE, b"x")], "hasDotdot"),
    ([(DIR, b".GIT", [(FILE, b"config", b"x")])], "hasDotgit"),
    ([(FILE, b"a/b", b"x")], "fullPathname"),
    ([(FILE, b"app", b"file"), nested("app/inner.txt", FILE, b"x")], "duplicateEntries")])
def test_a_tree_read_in_place_is_refused_as_git_fsck_refuses_a_fetched_one(tmp_path, hostile, check):
    repo = GitRepo(tmp_path / "repo")
    live_revision = repo.commit({"index.html": "v1", "sub/page.html": "p"})
    build = Built(str(repo.path), tmp_path)
    live = build(live_revision)
    commit = commit_on_top(repo.path, hostile)

    for base in ((live_revision, live), None):
        with pytest.raises(PermanentError, match=rf"refused: [0-9a-f]{{40}}: .* \(git fsck {check}\)"):
            build(commit, base)


def test_a_source_that_stops_needing_its_mirror_deploys_the_change_and_the_mirror_is_collected(tmp_path):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    first = repo.commit({"index.html": "v1"})
    apps = configured(tmp_path, {"hello": git_app(repo, tmp_path / "site", layout="site")})
    build = Builds(apps["hello"], tmp_path)
    assert isinstance(build.source, GitSource)
    mirror = build.source.mirror
    live = build(first)
    git(repo.path, "config", "--unset", "extensions.partialClone")      # read in place from now on
    head = repo.commit({"index.html": "v2"})

    snapshot = build(head, (first, live))
    removed, pruned = collect_caches(apps, tmp_path / "var", {"hello": {head}})

    assert snapshot.incremental and build.store.read_blob(snapshot.manifest.files["index.html"].sha256) == b"v2"
    assert removed == [mirror] and pruned == [] and not mirror.exists()
    repo.through_a_mirror()                                              # and back to a mirror
    again = build(repo.commit({"index.html": "v3"}), (head, snapshot))
    assert again.incremental and (mirror / "HEAD").exists()
