"""Manifests kept in buckets (issue 16): a snapshot of a change, derived from its base, seals,
compares and checks only what the change touched, and is the same snapshot as one built
from nothing."""
from __future__ import annotations

import io
import os

import pytest

from orchestrator.core.errors import InvalidAppLayout
from orchestrator.releases.manifests import FileEntry, Manifest, bucket_count
from orchestrator.releases.retention import collect_garbage
from orchestrator.releases.snapshots import Base, SnapshotStore

TREE = {f"d{i // 50:03d}/f{i:04d}.txt": f"file {i}".encode() for i in range(3000)}


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


def full(store, files: dict[str, bytes], links: dict[str, str] | None = None):
    writer = store.builder()
    for path, data in files.items():
        writer.add_stream(path, io.BytesIO(data))
    for path, target in (links or {}).items():
        writer.add_symlink(path, target)
    return writer.seal()


def change(store, base, revision: str = "r1", put: dict[str, bytes] | None = None,
           remove: tuple[str, ...] = (), links: dict[str, str] | None = None):
    writer = store.builder(Base(revision, base.manifest))
    for path, data in (put or {}).items():
        writer.add_stream(path, io.BytesIO(data))
    for path in remove:
        writer.remove(path)
    for path, target in (links or {}).items():
        writer.add_symlink(path, target)
    return writer.seal()


def buckets_on_disk(store) -> int:
    return len(os.listdir(store.buckets))


def test_a_big_tree_is_kept_in_buckets_and_a_one_file_change_writes_one_bucket(store):
    first = full(store, TREE)
    assert first.manifest.buckets().count == bucket_count(len(TREE)) > 1
    before = buckets_on_disk(store)

    second = change(store, first, put={"d007/f0350.txt": b"changed"})

    assert buckets_on_disk(store) == before + 1
    assert second.manifest.changed(first.manifest) == {"d007/f0350.txt"}


def test_a_derived_snapshot_is_the_snapshot_of_the_same_tree_built_from_nothing(store):
    first = full(store, TREE)
    derived = change(store, first, put={"new/file.txt": b"new", "d001/f0060.txt": b"x"},
                     remove=("d002/f0100.txt",))
    tree = {**TREE, "new/file.txt": b"new", "d001/f0060.txt": b"x"}
    del tree["d002/f0100.txt"]

    assert derived.id == full(store, tree).id
    assert derived.manifest == store.manifest(derived.id)


def test_a_derived_snapshot_counts_its_bytes_from_its_bases_and_the_change_as_a_full_one_does(store):
    first = full(store, TREE)
    assert first.bytes == sum(map(len, TREE.values()))
    derived = change(store, first, put={"new/file.txt": b"new", "d001/f0060.txt": b"longer than before"},
                     remove=("d002/f0100.txt",), links={"d003/f0150.txt": "../d001/f0060.txt"})
    tree = {**TREE, "new/file.txt": b"new", "d001/f0060.txt": b"longer than before"}
    del tree["d002/f0100.txt"], tree["d003/f0150.txt"]

    assert derived.bytes == sum(map(len, tree.values())) == store.manifest(derived.id).size()


def test_a_stored_manifest_loads_back_whole_from_a_fresh_store(store, tmp_path):
    first = full(store, TREE, links={"latest": "d001"})
    again = SnapshotStore(tmp_path / "store").manifest(first.id)
    assert again == first.manifest and again.links == {"latest": "d001"}


def test_a_manifest_stored_whole_before_buckets_existed_still_loads(store):
    old = Manifest({"a.txt": FileEntry("0" * 64, 1)}, {"l": "a.txt"})
    (store.manifests / "legacy.json").write_bytes(old.canonical())
    assert store.manifest("legacy") == old


@pytest.mark.parametrize("put, why", [
    ({"d001": b"a file where a folder is"}, "collides with the file 'd001'"),
    ({"d001/f0050.txt/inside": b"x"}, "collides with the file 'd001/f0050.txt'"),
])
def test_a_change_that_collides_with_the_tree_is_refused_like_a_full_snapshot(store, put, why):
    first = full(store, TREE)
    with pytest.raises(InvalidAppLayout, match=why):
        change(store, first, put=put)
    with pytest.raises(InvalidAppLayout, match=why):
        full(store, {**TREE, **put})


def test_a_changed_link_leaving_the_tree_is_refused(store):
    first = full(store, TREE, links={"up": "d001"})
    with pytest.raises(InvalidAppLayout, match="points outside the app"):
        change(store, first, links={"up": "../../etc"})


def test_a_folder_emptied_by_the_change_may_become_a_file(store):
    small = {"keep.txt": b"k", "gone/only.txt": b"x", **TREE}
    first = full(store, small)
    second = change(store, first, remove=("gone/only.txt",), put={"gone": b"now a file"})
    assert second.manifest.files["gone"].size == len(b"now a file")


def test_garbage_collection_removes_the_buckets_no_kept_manifest_names(store):
    first = full(store, TREE)
    second = change(store, first, put={"d007/f0350.txt": b"changed"})
    only_first = set(store.bucket_ids(first.id)) - set(store.bucket_ids(second.id))
    assert len(only_first) == 1

    collect_garbage(store, {second.id}, now=10 ** 10)

    left = {name.removesuffix(".json") for name in os.listdir(store.buckets)}
    assert left == set(store.bucket_ids(second.id))
    assert store.manifest(second.id) == second.manifest
