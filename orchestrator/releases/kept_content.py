"""What the store may hand to another host (issue 19): the roots, buckets and blobs of the
snapshots it keeps, as sets, so that each request costs a lookup, not a read of manifests.

Which snapshots are kept is the collection's answer (retention.kept_snapshots), given to
`update`; each snapshot's content is read once, when it is first kept, and the sets are put
together again only when the kept snapshots change. Not thread-safe: one caller at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.releases.snapshots import SnapshotStore


@dataclass(frozen=True)
class Content:
    """One snapshot's buckets and blobs."""
    buckets: frozenset[str]
    blobs: frozenset[str]


class KeptContent:
    def __init__(self, store: SnapshotStore):
        self.store = store
        self._kept: frozenset[str] | None = None
        self._each: dict[str, Content] = {}
        self._buckets: frozenset[str] = frozenset()
        self._blobs: frozenset[str] = frozenset()

    def update(self, kept: frozenset[str]) -> None:
        """The kept snapshots are now these."""
        if kept == self._kept:
            return
        self._each = {s: c for s in kept if (c := self._each.get(s) or self._content(s)) is not None}
        self._buckets = frozenset().union(*(c.buckets for c in self._each.values()))
        self._blobs = frozenset().union(*(c.blobs for c in self._each.values()))
        self._kept = kept

    def holds_snapshot(self, snapshot_id: str) -> bool:
        return snapshot_id in self._each

    def holds_bucket(self, bucket_id: str) -> bool:
        return bucket_id in self._buckets

    def holds_blob(self, sha256: str) -> bool:
        return sha256 in self._blobs

    def _content(self, snapshot_id: str) -> Content | None:
        """None for a snapshot whose manifest the store no longer has (collected meanwhile)."""
        try:
            files = self.store.manifest(snapshot_id).files
            buckets = self.store.bucket_ids(snapshot_id)
        except FileNotFoundError:
            return None
        return Content(frozenset(buckets), frozenset(e.sha256 for e in files.values()))
