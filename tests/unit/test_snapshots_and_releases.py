import io
import os
import time

import pytest

from orchestrator.core.errors import InvalidAppLayout, PermanentError
from orchestrator.releases.materialise import (
    Previous,
    live_release,
    materialise,
    switch,
)
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.retention import collect_garbage
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.releases.spares import make_spare
from orchestrator.releases.tree_checks import safe_path


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


def snapshot(store, files: dict[str, bytes], links: dict[str, str] | None = None):
    writer = store.builder()
    for path, data in files.items():
        writer.add_stream(path, io.BytesIO(data), alias=("test", path + str(hash(data))))
    for path, target in (links or {}).items():
        writer.add_symlink(path, target)
    return writer.seal()


def test_the_snapshot_id_depends_only_on_the_content(store):
    a = snapshot(store, {"x.txt": b"1", "d/y.txt": b"2"})
    b = snapshot(store, {"d/y.txt": b"2", "x.txt": b"1"})
    c = snapshot(store, {"x.txt": b"1", "d/y.txt": b"3"})
    assert a.id == b.id != c.id


def test_identical_contents_are_stored_once_and_read_only(store):
    snap = snapshot(store, {"a.txt": b"same", "b.txt": b"same"})
    blob = store.blob_path(snap.manifest.files["a.txt"].sha256)
    assert snap.manifest.files["a.txt"] == snap.manifest.files["b.txt"]
    assert oct(os.stat(blob).st_mode & 0o777) == "0o444"


def test_a_manifest_cut_short_by_a_crash_reads_as_missing_and_is_written_whole_again(store, tmp_path):
    built = snapshot(store, {"a.txt": b"1", "d/b.txt": b"2"}).manifest
    snapshot_id = store.save_manifest(built, durable=False)      # as a build's: not fsynced
    root = store.manifests / f"{snapshot_id}.json"
    root.write_bytes(root.read_bytes()[:7])         # what a crash before writeback leaves

    after_the_crash = SnapshotStore(tmp_path / "store")
    with pytest.raises(FileNotFoundError, match="cut short"):
        after_the_crash.manifest(snapshot_id)
    assert after_the_crash.save_manifest(built, durable=False) == snapshot_id
    assert SnapshotStore(tmp_path / "store").manifest(snapshot_id).files == built.files


def test_aliases_let_a_source_skip_content_it_already_stored(store):
    writer = store.builder()
    entry = writer.add_stream("a.txt", io.BytesIO(b"hello"), alias=("git-blob", "abc123"))
    writer.seal()
    assert store.lookup("git-blob", ["abc123", "other"]) == {"abc123": entry}


def test_a_writer_names_what_no_release_will_hold_by_the_funcignore_it_holds_so_far(store):
    writer = store.builder()
    paths = ["local.settings.json", ".git/config", "a.log", "logs/x.txt", "index.html"]
    before = writer.ignored(paths)
    writer.add_stream(".funcignore", io.BytesIO(b"*.log\nlogs/\n"))
    assert before == {"local.settings.json", ".git/config"}
    assert writer.ignored(paths) == before | {"a.log", "logs/x.txt"}


def test_the_seal_still_leaves_out_what_the_rules_exclude_whatever_a_source_asked_before(store):
    writer = store.builder()
    writer.add_stream(".funcignore", io.BytesIO(b"*.log\n"))
    writer.ignored(["app.js", "debug.log"])
    for path in ("app.js", "debug.log", "local.settings.json", "late.log"):
        writer.add_stream(path, io.BytesIO(b"x"))
    assert set(writer.seal().manifest.files) == {".funcignore", "app.js"}


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b", "a//b", "a\0b",
                                  "./a", "a\\..\\b", ""])
def test_names_that_could_escape_or_corrupt_a_release_are_refused(name):
    with pytest.raises(InvalidAppLayout, match="unsafe file name"):
        safe_path(name)


def test_a_file_named_like_a_folder_it_collides_with_is_refused(store):
    with pytest.raises(InvalidAppLayout, match="collides with the file 'a'"):
        snapshot(store, {"a": b"file", "a/b": b"inside"})


@pytest.mark.parametrize("target", ["../outside", "/etc", "d/../../x"])
def test_symlinks_pointing_outside_the_tree_are_refused(store, target):
    with pytest.raises(InvalidAppLayout, match="points outside the app"):
        snapshot(store, {"a.txt": b"1"}, {"link": target})


def test_symlinks_within_the_tree_are_kept(store, tmp_path):
    snap = snapshot(store, {"d/a.txt": b"1"}, {"d/b.txt": "a.txt", "top": "d"})
    release = materialise(store, snap.manifest, tmp_path / "releases" / "r1")
    assert (release / "top" / "b.txt").read_text() == "1"


def test_a_release_is_hardlinked_read_only_and_switched_atomically(store, tmp_path):
    snap = snapshot(store, {"host.json": b"{}", "f/function.json": b"{}"})
    release = materialise(store, snap.manifest, tmp_path / "releases" / "r1")
    target = tmp_path / "site"

    switch(target, release)

    assert live_release(target) == release and (target / "host.json").read_text() == "{}"
    blob = store.blob_path(snap.manifest.files["host.json"].sha256)
    assert os.stat(release / "host.json").st_ino == os.stat(blob).st_ino
    assert oct(os.stat(release / "f").st_mode & 0o777) == "0o555"
    assert not (tmp_path / "releases" / "r1.building").exists()


def test_executables_get_their_own_copy_so_the_shared_blob_stays_read_only(store, tmp_path):
    writer = store.builder()
    writer.add_stream("run.sh", io.BytesIO(b"#!/bin/sh\n"), executable=True)
    writer.add_stream("copy.txt", io.BytesIO(b"#!/bin/sh\n"))
    release = materialise(store, writer.seal().manifest, tmp_path / "r")
    assert oct(os.stat(release / "run.sh").st_mode & 0o777) == "0o555"
    assert oct(os.stat(release / "copy.txt").st_mode & 0o777) == "0o444"


def test_an_interrupted_build_is_discarded_and_rebuilt(store, tmp_path):
    snap = snapshot(store, {"a.txt": b"1"})
    half = tmp_path / "r1.building"
    half.mkdir()
    (half / "junk").write_text("left by a crash")
    release = materialise(store, snap.manifest, tmp_path / "r1")
    assert sorted(os.listdir(release)) == ["a.txt"]


def test_switching_replaces_an_earlier_release(store, tmp_path):
    one = materialise(store, snapshot(store, {"v": b"1"}).manifest, tmp_path / "r1")
    two = materialise(store, snapshot(store, {"v": b"2"}).manifest, tmp_path / "r2")
    switch(tmp_path / "site", one)
    switch(tmp_path / "site", two)
    assert (tmp_path / "site" / "v").read_text() == "2"


def test_a_target_holding_files_not_made_by_sluice_is_left_alone(store, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hand-made")
    release = materialise(store, snapshot(store, {"v": b"1"}).manifest, tmp_path / "r1")
    with pytest.raises(PermanentError, match="is not a Sluice symlink"):
        switch(tmp_path / "site", release)
    assert (tmp_path / "site" / "index.html").read_text() == "hand-made"


def test_read_only_releases_can_still_be_removed(store, tmp_path):
    release = materialise(store, snapshot(store, {"d/e/f.txt": b"1"}).manifest, tmp_path / "r1")
    remove_tree(release)
    assert not release.exists()


def build_from_previous(store, tmp_path, old_files, new_files, old_links=None, new_links=None):
    old = snapshot(store, old_files, old_links)
    new = snapshot(store, new_files, new_links)
    first = materialise(store, old.manifest, tmp_path / "r1")
    second = materialise(store, new.manifest, tmp_path / "r2", Previous(old.manifest, first))
    fresh = materialise(store, new.manifest, tmp_path / "fresh")
    return first, second, fresh


def listing(root):
    """Every entry under root with what it is: file content, link target, folder mode."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir", oct(os.stat(full).st_mode & 0o777))
            else:
                out[rel] = ("file", open(full, "rb").read(), oct(os.stat(full).st_mode & 0o777))
    return out


@pytest.mark.parametrize("old,new", [
    ({"a.txt": b"1", "b.txt": b"2"}, {"a.txt": b"1", "b.txt": b"3"}),          # modified
    ({"a.txt": b"1", "d/e/f.txt": b"2"}, {"a.txt": b"1"}),                        # folder emptied
    ({"a": b"file"}, {"a/b.txt": b"now a folder"}),                               # file -> folder
    ({"a/b.txt": b"folder", "a/c/d": b"x"}, {"a": b"now a file"}),                # folder -> file
    ({"x.txt": b"1"}, {"x.txt": b"1", "new/deep/y.txt": b"2"}),                   # new folders
])
def test_a_release_patched_from_the_previous_one_equals_one_built_afresh(store, tmp_path, old, new):
    first, second, fresh = build_from_previous(store, tmp_path, old, new)
    assert listing(second) == listing(fresh)
    assert listing(first) == listing(materialise(store, snapshot(store, old).manifest,
                                                 tmp_path / "again"))


def test_links_that_change_target_or_kind_are_patched_too(store, tmp_path):
    first, second, fresh = build_from_previous(
        store, tmp_path, {"a": b"1", "b": b"2", "c": b"3"}, {"a": b"1", "l": b"was a link"},
        old_links={"l": "a", "m": "b"}, new_links={"m": "a", "c": "a"})
    assert listing(second) == listing(fresh)
    assert os.readlink(first / "m") == "b"


def test_garbage_collection_removes_what_a_killed_writer_left_in_the_stores_tmp(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    orphan, fresh = store.tmp / "4242-1-0", store.tmp / "4243-1-0"
    orphan.write_bytes(b"half a blob")
    fresh.write_bytes(b"a blob being written")
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))

    collect_garbage(store, set())

    assert not orphan.exists() and fresh.exists()


class CountingStore(SnapshotStore):
    """Counts the buckets read from disk (no cache: a process that never saw the snapshot)."""

    def __init__(self, root):
        super().__init__(root)
        self.read: list[str] = []

    def bucket(self, bucket_id):
        self.read.append(bucket_id)
        return super().bucket(bucket_id)


def test_a_spare_is_patched_reading_only_the_buckets_that_differ_and_equals_a_release_built_afresh(store, tmp_path):
    old_files = {f"site/page{n:04}.html": f"<p>{n}</p>".encode() for n in range(1000)}     # 4 buckets
    new_files = {**old_files, "site/page0007.html": b"<p>seven</p>"}
    del new_files["site/page0500.html"]
    old, new = snapshot(store, old_files), snapshot(store, new_files, {"latest": "site/page0007.html"})
    apps = tmp_path / "releases" / "web"
    make_spare(materialise(store, old.manifest, apps / "d1"), old.id)
    another_process = CountingStore(tmp_path / "store")

    patched = materialise(another_process, new.manifest, apps / "d2")

    assert listing(patched) == listing(materialise(store, new.manifest, tmp_path / "fresh"))
    assert 1 <= len(another_process.read) <= 3 < len(store.bucket_ids(old.id))
