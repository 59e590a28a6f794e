"""The sources' caches heal by themselves: a Git mirror holds the tracked branch's head and
the revisions kept releases were built from, without history, so a big file the branch
deleted leaves the disk at the garbage collection after no kept release needs it; mirrors
and clones of sources no app uses any more are removed. Real git and hg throughout."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.config.settings import AppConfig, load_config
from orchestrator.releases.snapshots import Base, Snapshot, SnapshotStore
from orchestrator.sources import source_for
from orchestrator.sources.cache_gc import collect_caches
from orchestrator.sources.git import GitSource
from orchestrator.sources.git_cache import KEEP
from tests.helpers import FUNCTION_APP, GitRepo, git, git_app, write_config
from tests.integration.flow import sync_and_wait, tree, wait_until_let_go
from tests.integration.test_hg_source import hg_app
from tests.servers.git_http import GitHttpServer
from tests.servers.hg_serve import HgRepo


def holds(mirror: Path, oid: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", oid], cwd=mirror).returncode == 0


def size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def refs(mirror: Path) -> set[str]:
    return set(git(mirror, "for-each-ref", "--format=%(refname)").split())


def configured(tmp_path: Path, apps: dict) -> dict[str, AppConfig]:
    return load_config(write_config(tmp_path / "sluice.yaml", tmp_path / "var", apps), env={}).apps


class Builds:
    """Snapshots of one app's revisions, as the worker builds them (a base: its changes)."""

    def __init__(self, app: AppConfig, tmp_path: Path):
        self.source = source_for(app, tmp_path / "var")
        self.store = SnapshotStore(tmp_path / "var" / "store")

    def __call__(self, revision: str, base: tuple[str, Snapshot] | None = None) -> Snapshot:
        writer = self.store.builder(Base(base[0], base[1].manifest) if base else None)
        self.source.fetch(revision, writer)
        return writer.seal()


def test_a_big_file_the_branch_deleted_leaves_the_mirror_once_no_kept_release_was_built_with_it(
        workspace):
    repo = workspace.repo().through_a_mirror()
    big = os.urandom(4 << 20)
    repo.commit({**FUNCTION_APP, "big.bin": big})
    blob = git(repo.path, "rev-parse", "HEAD:big.bin")
    app = git_app(repo, workspace.target("hello"), keep_releases=1)
    services = workspace.configure({"hello": app}, gc_interval="0")
    sync_and_wait(services, "hello")
    deleted = repo.commit({"big.bin": None})
    sync_and_wait(services, "hello")
    wait_until_let_go(services, "hello")            # its collection done
    mirror = next((workspace.data_dir / "cache" / "git").glob("*.git"))
    assert holds(mirror, blob), "the first release, built with the big file, is still kept"
    before = size(mirror)
    repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v3'\n"})

    sync_and_wait(services, "hello")                # the first release is pruned now
    wait_until_let_go(services, "hello")

    assert not holds(mirror, blob)
    assert size(mirror) < before - len(big) // 2, (before, size(mirror))
    assert holds(mirror, deleted) and refs(mirror) >= {"refs/heads/master", KEEP + deleted}
    assert tree(workspace.target("hello"))["HttpHello/__init__.py"].endswith("'v3'\n")


def test_a_mirror_an_older_sluice_cloned_whole_is_cut_down_to_the_branch_and_still_deploys(tmp_path):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    repo.commit({"index.html": "v1", "big.bin": os.urandom(1 << 20)})
    old_blob = git(repo.path, "rev-parse", "HEAD:big.bin")
    repo.checkout("other", create=True)
    repo.commit({"other.bin": os.urandom(1 << 20)})
    other_blob = git(repo.path, "rev-parse", "HEAD:other.bin")
    git(repo.path, "tag", "v1")
    repo.checkout("master")
    live = repo.commit({"big.bin": None})
    apps = configured(tmp_path, {"hello": git_app(repo, tmp_path / "site", layout="site")})
    build = Builds(apps["hello"], tmp_path)
    assert isinstance(build.source, GitSource)
    mirror = build.source.mirror
    mirror.parent.mkdir(parents=True)
    git(tmp_path, "clone", "--mirror", "--quiet", str(repo.path), str(mirror))    # as before
    deployed = build(live)

    collect_caches(apps, tmp_path / "var", {"hello": {live}})

    assert refs(mirror) == {"refs/heads/master", KEEP + live}
    assert not holds(mirror, old_blob) and not holds(mirror, other_blob)
    head = repo.commit({"index.html": "v2"})
    incremental = build(head, (live, deployed))
    assert incremental.incremental and incremental.manifest == build(head).manifest


@pytest.mark.parametrize("kept", ["the live revision", "nothing"])
def test_a_snapshot_after_a_collection_equals_a_full_listing_diffed_from_the_live_revision_if_kept(
        tmp_path, kept):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    first = repo.commit({"index.html": "v1", "a.txt": "a", "b.txt": "b"})
    apps = configured(tmp_path, {"hello": git_app(repo, tmp_path / "site", layout="site")})
    build = Builds(apps["hello"], tmp_path)
    live = build(first)
    repo.commit({"a.txt": "a2"})
    build(repo.head(), (first, live))       # a deployment that failed later: the head moved on

    collect_caches(apps, tmp_path / "var", {"hello": {first} if kept == "the live revision" else set()})

    head = repo.commit({"b.txt": None, "c.txt": "c"})
    snapshot = build(head, (first, live))
    assert snapshot.manifest == build(head).manifest
    assert snapshot.incremental == (kept == "the live revision")


@pytest.mark.parametrize("server", ["protocol v2: by its id", "protocol v0: the branch's history"])
def test_a_revision_behind_the_branch_head_is_fetched_into_a_mirror_that_holds_only_the_head(
        tmp_path, server):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    older = repo.commit({"index.html": "older"})
    repo.commit({"index.html": "head"})
    url = (tmp_path / "repo").as_uri()      # not a local path: git would copy every object
    apps = configured(tmp_path, {"hello": {**git_app(repo, tmp_path / "site", layout="site"),
                                           "source": {"type": "git", "url": url}}})
    build = Builds(apps["hello"], tmp_path)
    build(repo.head())
    assert isinstance(build.source, GitSource)
    mirror = build.source.mirror
    assert not holds(mirror, older)
    if server.startswith("protocol v0"):    # which serves only the commits its refs name
        git(mirror, "config", "protocol.version", "0")

    snapshot = build(older)

    assert build.store.read_blob(snapshot.manifest.files["index.html"].sha256) == b"older"


def test_caches_of_sources_no_configured_app_uses_are_removed_unless_in_use(tmp_path):
    kept, dropped, busy = (GitRepo(tmp_path / name).through_a_mirror() for name in ("kept", "dropped", "busy"))
    for repo in (kept, dropped, busy):
        repo.commit({"index.html": repo.path.name})
    hg_repo = HgRepo(tmp_path / "hg")
    hg_repo.commit({"index.html": "hg"})
    every = {name: git_app(repo, tmp_path / name, layout="site")
             for name, repo in (("kept", kept), ("dropped", dropped), ("busy", busy))}
    every["hg"] = hg_app(str(hg_repo.path), tmp_path / "hg-site")
    apps = configured(tmp_path, every)
    heads = {"kept": kept.head(), "dropped": dropped.head(), "busy": busy.head(), "hg": hg_repo.head()}
    caches = {}
    for name, app in apps.items():
        build = Builds(app, tmp_path)
        build(heads[name])
        caches[name] = getattr(build.source, "mirror", None) or build.source.clone
    remaining = configured(tmp_path, {"kept": every["kept"]})

    with open(caches["busy"].with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # a deployment's fetch in it
        removed, _ = collect_caches(remaining, tmp_path / "var", {})

    assert sorted(removed) == sorted([caches["dropped"], caches["hg"]])
    assert not caches["dropped"].exists() and not caches["hg"].exists()
    assert caches["kept"].exists() and caches["busy"].exists()
    removed, _ = collect_caches(remaining, tmp_path / "var", {})
    assert removed == [caches["busy"]] and not caches["busy"].exists()


# --- a fetch costs the change, not the tree (issue 16) --------------------------------------

def tree_walks(trace: Path) -> list[list[str]]:
    """The `git rev-list --objects` runs git's trace recorded: its connectivity check, which
    walks the whole tree of the mirror's heads."""
    starts = [json.loads(line) for line in trace.read_text().splitlines() if '"child_start"' in line]
    return [s["argv"] for s in starts if "rev-list" in s["argv"] and "--objects" in s["argv"]]


@pytest.mark.parametrize("over", ["a local path", "http"])
def test_a_fetch_checks_that_the_head_arrived_without_walking_the_whole_tree(
        tmp_path, monkeypatch, over):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    repo.commit({f"d{i}/f.txt": str(i) for i in range(20)})
    served = tmp_path / "served" / "app.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo.path), str(served))
    with GitHttpServer(served.parent, v2=True) as server:
        url = str(repo.path) if over == "a local path" else f"{server.url}/app.git"
        apps = configured(tmp_path, {"hello": {**git_app(repo, tmp_path / "site", layout="site"),
                                               "source": {"type": "git", "url": url}}})
        build = Builds(apps["hello"], tmp_path)
        first = build(repo.head())
        head = repo.commit({"d3/f.txt": "changed"})
        git(repo.path, "push", "--quiet", str(served), "HEAD:master")
        trace = tmp_path / "trace.json"
        monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))

        snapshot = build(head, (git(repo.path, "rev-parse", "HEAD~1"), first))

    assert tree_walks(trace) == []
    assert build.store.read_blob(snapshot.manifest.files["d3/f.txt"].sha256) == b"changed"
    assert snapshot.incremental


def test_a_local_branch_that_moved_on_is_fetched_with_the_commits_since_not_as_a_new_shallow_head(
        tmp_path):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    first = repo.commit({"index.html": "v1", "a.txt": "a"})
    apps = configured(tmp_path, {"hello": git_app(repo, tmp_path / "site", layout="site")})
    build = Builds(apps["hello"], tmp_path)
    assert isinstance(build.source, GitSource)
    mirror = build.source.mirror
    live = build(first)
    collect_caches(apps, tmp_path / "var", {"hello": {first}})      # the mirror now shallow
    repo.commit({"a.txt": "a2"})
    head = repo.commit({"index.html": "v3"})

    build(head, (first, live))

    assert git(mirror, "rev-parse", f"{head}~2") == first
    assert head not in (mirror / "shallow").read_text()


def test_a_force_pushed_local_branch_is_fetched_without_the_history_behind_its_head(tmp_path):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    root = repo.commit({"index.html": "v1"})
    pushed = repo.commit({"index.html": "v2"})
    apps = configured(tmp_path, {"hello": git_app(repo, tmp_path / "site", layout="site")})
    build = Builds(apps["hello"], tmp_path)
    assert isinstance(build.source, GitSource)
    mirror = build.source.mirror
    build(pushed)
    collect_caches(apps, tmp_path / "var", {"hello": {pushed}})
    git(repo.path, "reset", "--quiet", "--hard", root)
    rewritten = repo.commit({"index.html": "v2 again"})

    snapshot = build(rewritten)

    assert rewritten in (mirror / "shallow").read_text() and not holds(mirror, root)
    assert build.store.read_blob(snapshot.manifest.files["index.html"].sha256) == b"v2 again"


def test_a_promisor_mark_a_killed_fetch_left_does_not_keep_a_deleted_big_file_in_the_mirror(tmp_path):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()
    repo.commit({"index.html": "v1"})
    apps = configured(tmp_path, {"hello": git_app(repo, tmp_path / "site", layout="site")})
    build = Builds(apps["hello"], tmp_path)
    assert isinstance(build.source, GitSource)
    mirror = build.source.mirror
    build(repo.head())
    with_big = repo.commit({"big.bin": os.urandom(1 << 20)})
    blob = git(repo.path, "rev-parse", "HEAD:big.bin")
    build(with_big)
    head = repo.commit({"big.bin": None})
    build(head)
    for pack in (mirror / "objects" / "pack").glob("*.pack"):   # what a fetch killed before
        pack.with_suffix(".promisor").touch()                    # Sluice unmarked it leaves

    collect_caches(apps, tmp_path / "var", {"hello": {head}})

    assert not holds(mirror, blob) and holds(mirror, head)


def git_commands(trace: Path) -> list[str]:
    """The git commands Sluice itself started (not those git started for them: upload-pack,
    index-pack...), as git's trace recorded them: the command, and its first option."""
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    commands = []
    for argv in (e["argv"][1:] for e in events if e["event"] == "start" and "/" not in e["sid"]):
        while argv[0] in ("-c", "--git-dir"):
            argv = argv[2:]
        commands.append(" ".join(argv[:2]) if argv[1:2] and argv[1].startswith("-") else argv[0])
    return commands


# a local source is read in place: no fetch, no pin, no merge-base; only the open cat-file
GIT_COMMANDS = {"read in place": ["cat-file --batch"],
                "through a mirror": ["cat-file --batch", "fetch --quiet", "merge-base --is-ancestor", "update-ref"]}


@pytest.mark.parametrize("read", list(GIT_COMMANDS))
def test_a_one_file_change_runs_git_to_read_its_objects_and_only_through_a_mirror_to_fetch_and_pin_it(
        tmp_path, monkeypatch, read):
    repo = GitRepo(tmp_path / "repo")
    if read == "through a mirror":
        repo.through_a_mirror()
    live_revision = repo.commit({f"d{i}/f.txt": str(i) for i in range(20)})
    apps = configured(tmp_path, {"hello": git_app(repo, tmp_path / "site", layout="site")})
    build = Builds(apps["hello"], tmp_path)
    live = build(live_revision)
    head = repo.commit({"d3/f.txt": "changed"})
    trace = tmp_path / "trace.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))

    snapshot = build(head, (live_revision, live))

    assert sorted(git_commands(trace)) == GIT_COMMANDS[read]
    monkeypatch.delenv("GIT_TRACE2_EVENT")
    assert snapshot.incremental and snapshot.manifest == build(head).manifest
