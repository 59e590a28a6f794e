"""A host's worker fetching a snapshot (releases/remote_store.py): the checks of what arrives
and the fan-out, against a store next door standing for the API's (the integration tests,
tests/integration/test_host_store.py, go through the real API)."""
from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from orchestrator.releases.manifests import Manifest
from orchestrator.releases.remote_store import ContentMismatch, at_once, fetch_snapshot
from orchestrator.releases.snapshots import SnapshotStore
from tests.helpers import Overlap
from tests.unit.test_kept_content import snapshot


def test_at_once_runs_the_work_several_at_a_time_and_gives_every_result():
    overlap = Overlap()

    def work(n: int) -> int:
        with overlap.inside():
            time.sleep(0.05)
        return n * n

    assert sorted(at_once(range(12), work, 4)) == [n * n for n in range(12)]
    assert 1 < overlap.most <= 4


def test_at_once_raises_the_first_failure_and_starts_nothing_more():
    started: list[int] = []

    def work(n: int) -> None:
        started.append(n)
        if n == 0:
            raise ContentMismatch("blob 0: refused")
        time.sleep(0.2)

    with pytest.raises(ContentMismatch, match="blob 0"):
        at_once(range(50), work, 2)
    assert len(started) < 50


class StoreNextDoor:
    """Stands for the API's store (the integration tests go through the real one): serves
    another store's documents and blobs, with whatever a test puts in their place."""

    def __init__(self, store: SnapshotStore):
        self.store, self.instead = store, {}
        self.asked: list[list[str]] = []
        self.cut_at: int | None = None

    def document(self, kind: str, content_id: str) -> bytes:
        folder = self.store.manifests if kind == "manifests" else self.store.buckets
        return self.instead.get(content_id) or (folder / f"{content_id}.json").read_bytes()

    @contextmanager
    def blob(self, sha256: str) -> Iterator[Iterator[bytes]]:
        self.asked.append([sha256])
        yield iter([self._bytes(sha256)])

    @contextmanager
    def blobs(self, ids: list[str]) -> Iterator[Iterator[bytes]]:
        """As the API answers: a line naming each blob and its size, then its bytes; sent in
        pieces of 7 bytes, so lines and blobs come split across them."""
        self.asked.append(ids)
        answer = b"".join(f"{sha} {len(self._bytes(sha))}\n".encode() + self._bytes(sha) for sha in ids)
        answer = answer[:self.cut_at] if self.cut_at is not None else answer
        yield iter([answer[n:n + 7] for n in range(0, len(answer), 7)])

    def _bytes(self, sha256: str) -> bytes:
        return self.instead.get(sha256) or self.store.read_blob(sha256)


def test_a_whole_document_manifest_of_before_buckets_is_fetched_too(tmp_path):
    server = SnapshotStore(tmp_path / "server" / "store")
    entry = server.put_stream(io.BytesIO(b"print('hi')\n"))
    root = Manifest({"app.py": entry}, {"link": "app.py"}).canonical()
    old_id = hashlib.sha256(root).hexdigest()
    (server.manifests / f"{old_id}.json").write_bytes(root)
    host = SnapshotStore(tmp_path / "host" / "store")

    fetched = fetch_snapshot(host, StoreNextDoor(server), old_id)     # type: ignore[arg-type]

    assert (fetched.blobs, fetched.documents) == (1, 1)
    assert host.manifest(old_id) == Manifest({"app.py": entry}, {"link": "app.py"})


def test_a_blob_shorter_or_longer_than_its_manifest_says_is_refused_naming_both_sizes(tmp_path):
    server = SnapshotStore(tmp_path / "server" / "store")
    snapshot_id = snapshot(server, {"a.txt": b"twelve bytes"})
    sha = server.manifest(snapshot_id).files["a.txt"].sha256
    next_door, host = StoreNextDoor(server), SnapshotStore(tmp_path / "host" / "store")

    for sent, says in ((b"twelve", "6 bytes; the manifest says 12"),
                       (b"twelve bytes and more", "21 bytes or more; the manifest says 12")):
        next_door.instead[sha] = sent
        with pytest.raises(ContentMismatch, match=f"blob {sha}: .*{says}"):
            fetch_snapshot(host, next_door, snapshot_id)        # type: ignore[arg-type]
        assert os.listdir(host.tmp) == [] and not os.path.exists(host.blob_path(sha))


def test_a_manifest_or_bucket_that_does_not_hash_to_its_id_is_refused(tmp_path):
    server = SnapshotStore(tmp_path / "server" / "store")
    snapshot_id = snapshot(server, {"a.txt": b"a"})
    bucket = server.bucket_ids(snapshot_id)[0]
    host = SnapshotStore(tmp_path / "host" / "store")

    for replaced in (snapshot_id, bucket):
        next_door = StoreNextDoor(server)
        next_door.instead[replaced] = orjson.dumps({"version": 2, "buckets": []})
        with pytest.raises(ContentMismatch, match=f"{replaced}: the bytes the API sent hash to"):
            fetch_snapshot(host, next_door, snapshot_id)        # type: ignore[arg-type]
        assert not (host.manifests / f"{snapshot_id}.json").exists()


def test_many_small_blobs_are_asked_for_in_batches_and_each_is_checked_by_its_hash(tmp_path):
    server = SnapshotStore(tmp_path / "server" / "store")
    files = {f"page{n}.html": f"<p>{n}</p>".encode() for n in range(1200)}
    snapshot_id = snapshot(server, files)
    next_door, host = StoreNextDoor(server), SnapshotStore(tmp_path / "host" / "store")

    fetched = fetch_snapshot(host, next_door, snapshot_id)      # type: ignore[arg-type]

    assert fetched.blobs == 1200 and sorted(map(len, next_door.asked)) == [200, 500, 500]
    assert {p: host.read_blob(e.sha256) for p, e in host.manifest(snapshot_id).files.items()} == files


def test_a_batch_cut_short_is_refused_and_leaves_no_part_of_a_blob(tmp_path):
    server = SnapshotStore(tmp_path / "server" / "store")
    snapshot_id = snapshot(server, {f"page{n}.html": f"<p>{n}</p>".encode() for n in range(10)})
    next_door, host = StoreNextDoor(server), SnapshotStore(tmp_path / "host" / "store")
    next_door.cut_at = 3 * (67 + 8) + 30        # a line and 8 bytes a blob: in the fourth's line

    with pytest.raises(ContentMismatch, match="cut short"):
        fetch_snapshot(host, next_door, snapshot_id)        # type: ignore[arg-type]

    assert os.listdir(host.tmp) == [] and not (host.manifests / f"{snapshot_id}.json").exists()
