"""A snapshot built from the live one plus what the source says changed (git diff-tree, hg
status) must equal one built from a full listing of the revision, whatever the change. Real
git and hg working copies go through every kind of change one after another, at the root
and in a subfolder (so a `path:` source also sees changes outside its folder it must ignore);
after each commit both snapshots are built and compared."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config.sources import GitSourceConfig, HgSourceConfig
from orchestrator.core.errors import InvalidAppLayout
from orchestrator.releases.snapshots import Base, Manifest, SnapshotStore
from orchestrator.sources.git import GitSource
from orchestrator.sources.hg import HgSource, hg_executable
from tests.faults.test_hostile_trees import FILE, commit_on_top
from tests.helpers import GitRepo, git
from tests.servers.hg_serve import HG_ENV, HgRepo, hg

START = {"index.html": "v1", "css/site.css": "body {}", "run.sh": "#!/bin/sh\n",
         "Readme.md": "# readme", "tofile/inner.txt": "in a folder", "todir": "a file",
         "deep/a/b/c.txt": "deep", "module": "a file, then a submodule"}
FOLDERS = ("", "app/")      # each change is made at the root and in the subfolder `app`


def write(root: Path, path: str, text: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)


def relink(root: Path, path: str, target: str) -> None:
    (root / path).unlink()
    (root / path).symlink_to(target)


def unlink_and_write(root: Path, path: str, text: str) -> None:
    (root / path).unlink()
    write(root, path, text)


def start(root: Path, p: str) -> None:
    for path, text in START.items():
        write(root, p + path, text)
    os.chmod(root / p / "run.sh", 0o755)
    (root / p / "link").symlink_to("index.html")


# (what changes, how) — applied in this order, each step on top of the ones before
STEPS: list[tuple[str, Callable[[Path, str], object]]] = [
    ("a file added", lambda r, p: write(r, p + "new.txt", "new")),
    ("a file modified", lambda r, p: write(r, p + "index.html", "v2")),
    ("a file deleted", lambda r, p: (r / p / "new.txt").unlink()),
    ("a file renamed", lambda r, p: (r / p / "css/site.css").rename(r / p / "css/main.css")),
    ("a file renamed and modified", lambda r, p: ((r / p / "css/main.css").rename(r / p / "main.css"),
                                                  write(r, p + "main.css", "body {color: red}"))),
    ("the exec bit set", lambda r, p: os.chmod(r / p / "index.html", 0o755)),
    ("the exec bit cleared", lambda r, p: os.chmod(r / p / "run.sh", 0o644)),
    ("a file made a symlink", lambda r, p: relink(r, p + "Readme.md", "index.html")),
    ("a symlink made a file", lambda r, p: unlink_and_write(r, p + "link", "was a link")),
    ("a symlink retargeted", lambda r, p: relink(r, p + "Readme.md", "main.css")),
    ("a file made a folder", lambda r, p: ((r / p / "todir").unlink(),
                                           write(r, p + "todir/inner.txt", "now a folder"))),
    ("a folder made a file", lambda r, p: (shutil.rmtree(r / p / "tofile"),
                                           write(r, p + "tofile", "now a file"))),
    ("a case-only rename", lambda r, p: (r / p / "index.html").rename(r / p / "Index.html")),
    ("a deep folder deleted", lambda r, p: shutil.rmtree(r / p / "deep")),
    ("a folder made deep again", lambda r, p: write(r, p + "deep/x/y/z/w.txt", "deeper")),
    ("a .funcignore added", lambda r, p: write(r, p + ".funcignore", "*.md\n")),
    ("a file the .funcignore names added", lambda r, p: write(r, p + "notes.md", "ignored")),
    ("nothing changed", lambda r, p: None),
]


class Scm:
    """A working copy of git or hg, committed to after each change, and its source."""
    name: str
    path: Path

    def commit(self) -> str: ...

    def source(self, folder: str, cache: Path): ...


class GitScm(Scm):
    name = "git"

    def __init__(self, path: Path):
        self.path = path
        GitRepo(path)

    def commit(self) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", "step")
        return git(self.path, "rev-parse", "HEAD")

    def source(self, folder: str, cache: Path) -> GitSource:
        return GitSource(GitSourceConfig(type="git", url=str(self.path), path=folder), cache)

    def submodule(self, p: str) -> str:
        """A file replaced by a submodule (a gitlink entry; its commit need not exist here)."""
        (self.path / p / "module").unlink()
        git(self.path, "add", "-A")
        git(self.path, "update-index", "--add", "--cacheinfo",
            f"160000,{git(self.path, 'rev-parse', 'HEAD')},{p}module")
        git(self.path, "commit", "--quiet", "-m", "submodule")
        return git(self.path, "rev-parse", "HEAD")


class HgScm(Scm):
    name = "hg"

    def __init__(self, path: Path):
        self.path = path
        HgRepo(path)

    def commit(self) -> str:
        hg(self.path, "addremove", "--quiet")
        # exit status 1 when nothing changed: hg makes no empty commits, the revision stays
        subprocess.run([hg_executable(), "commit", "--quiet", "-m", "step"], cwd=self.path,
                       env={**os.environ, **HG_ENV}, capture_output=True)
        return hg(self.path, "log", "-r", ".", "-T", "{node}")

    def source(self, folder: str, cache: Path) -> HgSource:
        return HgSource(HgSourceConfig(type="hg", url=str(self.path), path=folder), cache)


class Chain:
    """Snapshots of one source, each built from the one before it, as the worker builds them."""

    def __init__(self, scm: Scm, folder: str, tmp_path: Path):
        self.store = SnapshotStore(tmp_path / f"store-{scm.name}-{folder or 'root'}")
        self.source = scm.source(folder, tmp_path / f"cache-{scm.name}-{folder or 'root'}")
        self.live: Base | None = None

    def step(self, revision: str, what: str) -> None:
        incremental = self.build(revision, self.live)
        full = self.build(revision, None)
        assert incremental.manifest == full.manifest, f"after {what}: {difference(incremental.manifest, full.manifest)}"
        if self.live and ".funcignore added" not in what:       # that one lists every file
            assert incremental.incremental, f"after {what}: the diff was not used"
        self.live = Base(revision, incremental.manifest)

    def build(self, revision: str, base: Base | None):
        writer = self.store.builder(base)
        self.source.fetch(revision, writer)
        return writer.seal()


def difference(got: Manifest, full: Manifest) -> dict:
    return {"files": {p: (got.files.get(p), full.files.get(p))
                      for p in got.files.keys() | full.files.keys() if got.files.get(p) != full.files.get(p)},
            "links": {p: (got.links.get(p), full.links.get(p))
                      for p in got.links.keys() | full.links.keys() if got.links.get(p) != full.links.get(p)}}


# An hg run takes 0.2-0.5 s, a dozen per step: hg goes through the subfolder only (which still
# sees the changes outside it go by) and three changes to a commit.
@pytest.mark.parametrize("scm_type,folders,per_commit", [(GitScm, ("", "app"), 1), (HgScm, ("app",), 3)],
                         ids=["git", "hg"])
def test_a_snapshot_built_from_the_changes_equals_one_built_from_a_full_listing_after_every_change(
        tmp_path, scm_type, folders, per_commit):
    scm = scm_type(tmp_path / "repo")
    for p in FOLDERS:
        start(scm.path, p)
    chains = [Chain(scm, folder, tmp_path) for folder in folders]
    revision = scm.commit()
    for chain in chains:
        chain.step(revision, "the first commit")
    for i in range(0, len(STEPS), per_commit):
        steps = STEPS[i:i + per_commit]
        for _, change in steps:
            for p in FOLDERS:
                change(scm.path, p)
        revision = scm.commit()
        for chain in chains:
            chain.step(revision, ", ".join(what for what, _ in steps))
    if isinstance(scm, GitScm):     # hg has no entry of this kind
        for p in FOLDERS:
            revision = scm.submodule(p)
        for chain in chains:
            chain.step(revision, "a file made a submodule")
        for p in FOLDERS:
            write(scm.path, p + "module", "a file again")
        revision = scm.commit()
        for chain in chains:
            chain.step(revision, "a submodule made a file")


def duplicate_tree_commit(repo: GitRepo) -> str:
    """The branch's tree plus a second `index.html` entry (git fsck: duplicateEntries), as a
    repository that did not check pushes would have stored it. Committed before the source's
    mirror is first cloned (a local clone copies objects unchecked), as objects fetched before
    Sluice checked them would be there."""
    return commit_on_top(repo.path, [(FILE, b"index.html", b"the second entry\n")])


class Built:
    """Snapshots of one git repository, with or without a base."""

    def __init__(self, repo: GitRepo, tmp_path: Path):
        self.store = SnapshotStore(tmp_path / "store")
        self.source = GitSource(GitSourceConfig(type="git", url=str(repo.path)), tmp_path / "cache")

    def __call__(self, revision: str, base: Base | None = None):
        writer = self.store.builder(base)
        self.source.fetch(revision, writer)
        return writer.seal()


def test_a_clean_commit_after_a_live_one_with_a_duplicate_entry_keeps_every_file(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    clean = repo.commit({"index.html": "v1", "other.html": "other"})
    duplicated = duplicate_tree_commit(repo)
    build = Built(repo, tmp_path)
    # what an earlier Sluice deployed from the diff (`A index.html`, listed once) is live
    writer = build.store.builder(Base(clean, build(clean).manifest))
    writer.add_stream("index.html", io.BytesIO(b"the second entry\n"))
    live = writer.seal()
    repaired = repo.commit({"index.html": "v2"})     # the index still holds the clean tree

    incremental = build(repaired, Base(duplicated, live.manifest))

    assert incremental.manifest == build(repaired).manifest
    assert set(incremental.manifest.files) == {"index.html", "other.html"}


def test_a_commit_with_a_duplicate_entry_is_refused_naming_it_even_after_a_clean_live_one(tmp_path):
    repo = GitRepo(tmp_path / "repo").through_a_mirror()     # its copy unchecked by git fsck
    clean = repo.commit({"index.html": "v1"})
    duplicated = duplicate_tree_commit(repo)
    build = Built(repo, tmp_path)

    with pytest.raises(InvalidAppLayout, match="'index.html' appears twice"):
        build(duplicated, Base(clean, build(clean).manifest))
