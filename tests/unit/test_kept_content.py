"""Which snapshots the store serves to hosts: those kept, followed through the feed
(api/kept_snapshots.py), and what they hold (releases/kept_content.py); ids that may name
content (releases/integrity.py)."""
from __future__ import annotations

import io

import pytest

from orchestrator.api.kept_snapshots import KeptSnapshots
from orchestrator.core.feed_moves import FeedMoves
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.releases.integrity import is_sha256
from orchestrator.releases.kept_content import KeptContent
from orchestrator.releases.snapshots import SnapshotStore


def snapshot(store: SnapshotStore, files: dict[str, bytes]) -> str:
    writer = store.builder()
    for path, data in files.items():
        writer.add_stream(path, io.BytesIO(data))
    return writer.seal().id


def waiting(app: str, *snapshots: str) -> AppView:
    """An app whose deployments of these snapshots wait (not ended: kept)."""
    return AppView(name=app, deployments={
        f"d{n}": DeploymentView(id=f"d{n}", revision=f"r{n}", trigger="manual", received_at=0.0,
                                status=DeploymentStatus.PENDING, snapshot=s)
        for n, s in enumerate(snapshots)})


class Feed:
    """The feed as KeptSnapshots asks it, and the apps' views as they are now."""

    def __init__(self, views: dict[str, AppView]):
        self.views, self.last, self.moved, self.read = views, "1-0", frozenset[str](), []

    def move(self, *apps: str, known: bool = True) -> None:
        self.last = f"{int(self.last.split('-')[0]) + 1}-0"
        self.moved = frozenset(apps) if known else None

    def moves(self, after: str) -> FeedMoves:
        return FeedMoves(self.last, frozenset() if after == self.last else self.moved)

    def read_views(self, names: list[str]) -> list[AppView]:
        self.read.append(sorted(names))
        return [self.views[n] for n in names]

    def kept(self) -> KeptSnapshots:
        return KeptSnapshots(lambda: list(self.views), self.read_views, self.moves)


def test_kept_snapshots_reads_every_app_first_then_only_those_the_feed_says_moved():
    feed = Feed({"a": waiting("a", "s1"), "b": waiting("b", "s2")})
    kept = feed.kept()

    assert kept.now() == {"s1", "s2"}
    assert kept.now() == {"s1", "s2"}
    feed.views["b"] = waiting("b", "s3")
    feed.move("b")
    assert kept.now() == {"s1", "s3"}
    assert feed.read == [["a", "b"], ["b"]]


def test_kept_snapshots_reads_every_app_again_when_the_feed_cannot_tell_which_moved():
    feed = Feed({"a": waiting("a", "s1"), "b": waiting("b", "s2")})
    kept = feed.kept()
    kept.now()
    del feed.views["b"]
    feed.move(known=False)

    assert kept.now() == {"s1"}
    assert feed.read == [["a", "b"], ["a"]]


def test_kept_content_holds_the_roots_buckets_and_blobs_of_kept_snapshots_only(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    first = snapshot(store, {"a.txt": b"only in the first", "same.txt": b"in both"})
    second = snapshot(store, {"b.txt": b"only in the second", "same.txt": b"in both"})
    blob = {text: store.manifest(s).files[name].sha256
            for s, name, text in ((first, "a.txt", "first"), (second, "b.txt", "second"),
                                  (first, "same.txt", "same"))}
    content = KeptContent(store)

    content.update(frozenset({first, second}))
    assert all(content.holds_blob(b) for b in blob.values())
    content.update(frozenset({second}))

    assert content.holds_snapshot(second) and not content.holds_snapshot(first)
    assert all(content.holds_bucket(b) for b in store.bucket_ids(second))
    assert [content.holds_blob(blob[k]) for k in ("first", "second", "same")] == [False, True, True]


def test_kept_content_passes_over_a_kept_snapshot_whose_manifest_was_collected(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    content = KeptContent(store)

    content.update(frozenset({"0" * 64}))

    assert not content.holds_snapshot("0" * 64)


@pytest.mark.parametrize("text, named", [("0" * 64, True), ("ab" * 32, True), ("AB" * 32, False),
                                         ("0" * 63, False), ("0" * 64 + "\n", False), ("../" * 21 + "a", False)])
def test_only_a_sha256_in_lower_case_hex_names_content(text, named):
    assert is_sha256(text) is named
