"""Trees thousands of folders deep: refused before they go live, and where one is on disk
already (deployed by an earlier Sluice) it is removed and replaced like any other, although
its absolute paths pass PATH_MAX and a recursive walk passes Python's recursion limit."""
from __future__ import annotations

import io
import os

import pytest

from orchestrator.core.errors import PermanentError
from orchestrator.core.projections import AppView
from orchestrator.releases.materialise import Previous, materialise
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.retention import prune_releases
from orchestrator.releases.snapshots import Manifest, SnapshotStore
from orchestrator.releases.spares import empty_trash
from orchestrator.releases.validation import MAX_DEPTH, validate

DEPTH = 2000
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


@pytest.fixture(autouse=True)
def no_deep_tree_left(tmp_path):
    """pytest's clean-up of old temporary folders recurses (shutil.rmtree) and would fail."""
    yield
    remove_tree(tmp_path)


def deep_path(depth: int, name: str = "leaf.txt", folder: str = "d") -> str:
    return f"{folder}/" * (depth - 1) + name


def snapshot(store: SnapshotStore, files: dict[str, bytes]) -> Manifest:
    writer = store.builder()
    for path, data in files.items():
        writer.add_stream(path, io.BytesIO(data))
    return writer.seal().manifest


def deep_release(root, depth: int, data: bytes, folder: str = "d") -> None:
    """A read-only release holding one file `depth` levels down, made as the earlier Sluice
    left it (folders 0555, the file 0444), folder by folder relative to the one above, since
    its absolute path is longer than any system call takes."""
    os.mkdir(root)
    fd, opened = os.open(root, DIRECTORY), []
    for _ in range(depth - 1):
        os.mkdir(folder, dir_fd=fd)
        opened.append(fd)
        fd = os.open(folder, DIRECTORY, dir_fd=fd)
    leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o444, dir_fd=fd)
    os.write(leaf, data)
    os.close(leaf)
    for parent in [fd, *reversed(opened)]:
        os.fchmod(parent, 0o555)
        os.close(parent)


def test_a_read_only_release_thousands_of_folders_deep_is_removed(tmp_path):
    release = tmp_path / "releases" / "hello" / "deep"
    release.parent.mkdir(parents=True)
    deep_release(release, DEPTH, b"deep")

    remove_tree(release)

    assert os.listdir(release.parent) == []


def test_pruning_removes_a_release_thousands_of_folders_deep(tmp_path):
    releases = tmp_path / "releases" / "hello"
    releases.mkdir(parents=True)
    deep_release(releases / "old", DEPTH, b"deep")

    removed = prune_releases(AppView("hello"), releases, keep=3)
    emptied = empty_trash(releases)

    assert removed == [str(releases / "old")] and emptied == 1
    assert os.listdir(releases) == [".trash"] and os.listdir(releases / ".trash") == []


def test_the_release_after_a_live_one_thousands_of_folders_deep_is_built_afresh(store, tmp_path):
    # 8,000 bytes: `cp -al` fails on it (ENAMETOOLONG), and its half-made copy is removed
    deep = {deep_path(DEPTH, folder="dir"): b"deep"}
    live = tmp_path / "live"
    deep_release(live, DEPTH, b"deep", folder="dir")
    new = snapshot(store, {"index.html": b"shallow again"})

    release = materialise(store, new, tmp_path / "next", Previous(snapshot(store, deep), live))

    assert sorted(os.listdir(release)) == ["index.html"]
    assert (release / "index.html").read_bytes() == b"shallow again"


def test_a_path_deeper_than_the_limit_fails_validation_naming_it(store):
    manifest = snapshot(store, {"index.html": b"ok", deep_path(DEPTH): b"deep"})

    with pytest.raises(PermanentError) as refused:
        validate("site", manifest, store)

    message = str(refused.value)
    assert message.startswith("'d/d/d/d/") and "/leaf.txt'" in message
    assert f"{DEPTH} levels deep" in message and f"at most {MAX_DEPTH}" in message
    assert len(message) < 500


def test_a_path_as_deep_as_the_limit_passes(store):
    validate("site", snapshot(store, {deep_path(MAX_DEPTH): b"just deep enough"}), store)


def test_a_symlink_deeper_than_the_limit_is_refused_too(store):
    writer = store.builder()
    writer.add_stream("index.html", io.BytesIO(b"ok"))
    writer.add_symlink(deep_path(MAX_DEPTH + 1, "link"), "/".join([".."] * MAX_DEPTH) + "/index.html")

    with pytest.raises(PermanentError, match=f"{MAX_DEPTH + 1} levels deep"):
        validate("site", writer.seal().manifest, store)
