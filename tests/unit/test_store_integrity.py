"""Corrupt store blobs are caught where content enters a release, by the scrub, and kept
out of the store until the source supplies them again."""
import io
import os
import time

import pytest

from orchestrator.core.errors import TransientError
from orchestrator.releases.integrity import CorruptBlob, Quarantine
from orchestrator.releases.materialise import Previous, materialise
from orchestrator.releases.retention import collect_garbage
from orchestrator.releases.scrub import scrub_round
from orchestrator.releases.snapshots import SnapshotStore


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


def snapshot(store, files: dict[str, bytes], base=None):
    writer = store.builder(base)
    for path, data in files.items():
        known = writer.known("test", [path + data.decode()])
        if known:
            writer.add_known(path, next(iter(known.values())))
        else:
            writer.add_stream(path, io.BytesIO(data), alias=("test", path + data.decode()))
    return writer.seal()


def corrupt(store, sha256: str, data: bytes = b"tampered") -> None:
    blob = store.blob_path(sha256)
    os.chmod(blob, 0o644)
    with open(blob, "wb") as f:
        f.write(data)
    os.chmod(blob, 0o444)


def test_a_corrupt_blob_entering_a_release_fails_it_naming_the_file_and_is_quarantined(store, tmp_path):
    snap = snapshot(store, {"index.html": b"<h1>v1</h1>", "a.css": b"body {}"})
    sha = snap.manifest.files["index.html"].sha256
    corrupt(store, sha)
    with pytest.raises(CorruptBlob, match=f"index.html: .*blob {sha}.* corrupt") as failed:
        materialise(store, snap.manifest, tmp_path / "releases" / "r1")
    assert isinstance(failed.value, TransientError)         # retried: the retry fetches again
    assert not os.path.exists(store.blob_path(sha))
    assert list(Quarantine(store).entries()) == [sha]
    assert not (tmp_path / "releases" / "r1").exists()


def test_a_writer_does_not_claim_content_the_store_no_longer_holds_and_stores_it_again(store, tmp_path):
    snap = snapshot(store, {"index.html": b"<h1>v1</h1>"})
    sha = snap.manifest.files["index.html"].sha256
    corrupt(store, sha)
    with pytest.raises(CorruptBlob):
        materialise(store, snap.manifest, tmp_path / "r1")
    again = snapshot(store, {"index.html": b"<h1>v1</h1>"})
    assert again.blobs_added == 1 and again.blobs_reused == 0
    release = materialise(store, again.manifest, tmp_path / "r2", fresh=again.fresh)
    assert (release / "index.html").read_bytes() == b"<h1>v1</h1>"


def test_a_changed_file_whose_stored_blob_is_corrupt_fails_the_patched_release(store, tmp_path):
    """The content was stored long ago (another app, an older release): the alias reuses it."""
    snapshot(store, {"old/page.html": b"shared"})
    v1 = snapshot(store, {"index.html": b"v1"})
    r1 = materialise(store, v1.manifest, tmp_path / "r1", fresh=v1.fresh)
    v2 = snapshot(store, {"index.html": b"v1", "page.html": b"shared"})
    corrupt(store, v2.manifest.files["page.html"].sha256)
    with pytest.raises(CorruptBlob, match="page.html"):
        materialise(store, v2.manifest, tmp_path / "r2", Previous(v1.manifest, r1), fresh=v2.fresh)


def test_a_release_holding_a_quarantined_inode_is_damaged_and_one_built_afresh_is_not(store, tmp_path):
    snap = snapshot(store, {"index.html": b"v1", "b.txt": b"b"})
    release = materialise(store, snap.manifest, tmp_path / "r1", fresh=snap.fresh)
    sha = snap.manifest.files["index.html"].sha256
    corrupt(store, sha)
    quarantine = Quarantine(store)
    assert quarantine.damaged(snap.manifest, release) == []
    quarantine.add_blob(sha)
    assert quarantine.damaged(snap.manifest, release) == ["index.html"]
    assert quarantine.lost(snap.manifest) == ["index.html"]
    again = snapshot(store, {"index.html": b"v1", "b.txt": b"b"})
    fresh = materialise(store, again.manifest, tmp_path / "r2", fresh=again.fresh)
    assert quarantine.damaged(again.manifest, fresh) == [] and quarantine.lost(again.manifest) == []


def test_the_scrub_hashes_a_few_blobs_a_round_and_quarantines_a_corrupt_one(store):
    snap = snapshot(store, {f"f{i}.txt": b"%d" % i for i in range(5)})
    shas = sorted(e.sha256 for e in snap.manifest.files.values())
    corrupt(store, shas[3])
    rounds = [scrub_round(store, 2) for _ in range(3)]
    assert [r.checked for r in rounds] == [2, 2, 1]
    assert [r.corrupt for r in rounds] == [[], [shas[3]], []]
    assert [r.pass_ended for r in rounds] == [False, False, True]
    assert scrub_round(store, 2).checked == 2        # the next pass starts over
    assert list(Quarantine(store).entries()) == [shas[3]]


def test_garbage_collection_drops_quarantined_content_no_release_holds(store, tmp_path):
    snap = snapshot(store, {"index.html": b"v1", "b.txt": b"b"})
    release = materialise(store, snap.manifest, tmp_path / "r1", fresh=snap.fresh)
    quarantine = Quarantine(store)
    quarantine.add_blob(snap.manifest.files["index.html"].sha256)
    quarantine.add_blob(snap.manifest.files["b.txt"].sha256)
    os.chmod(release, 0o755)
    os.unlink(release / "b.txt")
    collect_garbage(store, {snap.id}, time.time())
    assert list(quarantine.entries()) == [snap.manifest.files["index.html"].sha256]
