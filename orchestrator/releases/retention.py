"""Retention: keep `keep_releases` releases per app plus the live one; collect the blobs
and manifests that no kept snapshot references, and quarantined content no release holds.
History (the events) keeps everything."""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from orchestrator.core.projections import AppView
from orchestrator.releases.integrity import Quarantine
from orchestrator.releases.materialise import remove_tree
from orchestrator.releases.snapshots import SnapshotStore

# Blobs and manifests younger than this are never collected: a deployment in flight may
# have just written them without any kept snapshot naming them yet.
GRACE_SECONDS = 600


def prune_releases(view: AppView, releases_dir: Path, keep: int) -> list[str]:
    """Remove this app's release folders but the live one and the `keep` newest others, and
    leftovers of interrupted builds. Call it holding the app's lease."""
    live = view.active.release if view.active else None
    kept = {live} | set([r for r in view.kept_releases() if r != live][:keep])
    removed = []
    for entry in sorted(os.scandir(releases_dir), key=lambda e: e.name) if releases_dir.is_dir() else []:
        if entry.path not in kept:
            remove_tree(Path(entry.path))
            removed.append(entry.path)
    return removed


def kept_snapshots(views: Iterable[AppView]) -> set[str]:
    """Snapshots some app can still need: kept releases, and deployments not yet ended; with
    the source's snapshot a build added to (the next incremental snapshot starts from it)."""
    kept: set[str] = set()
    for view in views:
        releases = set(view.kept_releases())
        for d in view.deployments.values():
            if d.release in releases or not d.terminal:
                kept.update(s for s in (d.snapshot, d.source_snapshot) if s)
    return kept


def kept_revisions(views: Iterable[AppView]) -> dict[str, set[str]]:
    """Per app, the source revisions it may fetch again or diff from: those of kept releases
    (the live one is the next incremental snapshot's base) and of deployments not ended."""
    kept: dict[str, set[str]] = {}
    for view in views:
        releases = set(view.kept_releases())
        kept[view.name] = {d.revision for d in view.deployments.values()
                           if d.revision and (d.release in releases or not d.terminal)}
    return kept


def collect_garbage(store: SnapshotStore, keep: set[str], now: float | None = None,
                    grace: float = GRACE_SECONDS) -> tuple[int, int]:
    """Delete manifests not in `keep`, blobs none of the kept manifests reference, files
    writers left in the store's tmp and quarantined files no release links. Returns
    (manifests, blobs) removed."""
    cutoff = (now or time.time()) - grace
    referenced: set[str] = set()
    for snapshot_id in keep:
        try:
            referenced.update(e.sha256 for e in store.manifest(snapshot_id).files.values())
        except FileNotFoundError:
            continue
    manifests = [e for e in os.scandir(store.manifests)
                 if e.name.removesuffix(".json") not in keep and _old(e, cutoff)]
    blobs = [e for d in os.scandir(store.blobs) for e in os.scandir(d.path)
             if e.name not in referenced and _old(e, cutoff)]
    store.forget([e.name for e in blobs])      # aliases first, so nobody reuses a blob going away
    # what a writer killed mid-write left (a writer alive touches its file as it writes)
    orphans = [e for e in os.scandir(store.tmp) if _old(e, cutoff)]
    for entry in (*manifests, *blobs, *orphans):
        os.unlink(entry.path)
    Quarantine(store).collect()
    return len(manifests), len(blobs)


def _old(entry: os.DirEntry, cutoff: float) -> bool:
    return entry.stat(follow_symlinks=False).st_mtime < cutoff
