"""Retention: keep `keep_releases` releases per app plus the live one; collect the blobs
and manifests that no kept snapshot references, and quarantined content no release holds.
History (the events) keeps everything."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path

from orchestrator.core.projections import AppView
from orchestrator.releases.integrity import Quarantine
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.releases.spares import is_release, make_spare, to_trash

# Blobs and manifests younger than this are never collected: a deployment in flight may
# have just written them without any kept snapshot naming them yet.
GRACE_SECONDS = 600


def prune_releases(view: AppView, releases_dir: Path, keep: int) -> list[str]:
    """Let go of this app's release folders but the live one and the `keep` newest others,
    and of leftovers of interrupted builds: the newest release let go whose snapshot is known
    becomes the app's spare (recycled by the next deployment), the rest move to the trash
    (`empty_trash` deletes them once the lease is let go). Call it holding the app's lease."""
    live = view.active.release if view.active else None
    kept = {live} | set([r for r in view.kept_releases() if r != live][:keep])
    return _let_go(view, releases_dir, lambda path: str(path) in kept)


def prune_host_releases(view: AppView, releases_dir: Path, keep: int, live: str) -> list[str]:
    """A host's `prune_releases` (issue 19): its releases are named by their deployments as
    the app's view records them (`releases_pruned`), `live` the deployment this host runs;
    a spare kept as on one machine, so the host's next release patches it."""
    # pruned before its deployment succeeds: the app's active release is among the `keep`
    # newest, kept for a rollout that fails to switch this host back to
    kept = {live} | {Path(r).name for r in view.kept_releases()[:keep]}
    return _let_go(view, releases_dir, lambda path: path.name in kept)


def _let_go(view: AppView, releases_dir: Path, kept: Callable[[Path], bool]) -> list[str]:
    """The release folders not `kept` let go of: the newest whose snapshot is known becomes
    the app's spare, the rest go to the trash."""
    names = sorted(os.listdir(releases_dir)) if releases_dir.is_dir() else []
    let_go = [releases_dir / n for n in names if is_release(n) and not kept(releases_dir / n)]
    order = {d: n for n, d in enumerate(view.deployments)}     # ids of one second sort at random
    whole = [p for p in let_go if _snapshot_of(view, p)]
    spare = max(whole, key=lambda p: order[p.name], default=None)
    for path in let_go:
        if path == spare:
            make_spare(path, _snapshot_of(view, path) or "")
        else:
            to_trash(path)
    return [str(p) for p in let_go]


def releases_pruned(view: AppView, keep: int) -> list[str]:
    """The releases of an app with hosts that retention lets go of: what `prune_releases`
    would on one machine, by the view alone (each host removes its own copies)."""
    live = view.active.release if view.active else None
    return [r for r in view.kept_releases() if r != live][keep:]


def _snapshot_of(view: AppView, release: Path) -> str | None:
    """The snapshot a release folder holds (named by its deployment), if it is whole."""
    d = view.deployments.get(release.name)
    return d.snapshot if d is not None and d.snapshot and not release.name.endswith(".building") else None


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
                    grace: float = GRACE_SECONDS, manifests_only: AbstractSet[str] = frozenset()) -> tuple[int, int]:
    """Delete manifests not in `keep` (nor in `manifests_only`: the spares' snapshots, whose
    manifests a deployment patches a spare from, but whose blobs it never reads), blobs none
    of the kept manifests reference, files writers left in the store's tmp and quarantined
    files no release links. Returns (manifests, blobs) removed."""
    cutoff = (now or time.time()) - grace
    referenced: set[str] = set()
    for snapshot_id in keep:
        try:
            referenced.update(e.sha256 for e in store.manifest(snapshot_id).files.values())
        except FileNotFoundError:
            continue
    roots = [e for e in os.scandir(store.manifests) if e.is_file()]
    manifests = [e for e in roots if _old(e, cutoff)
                 and e.name.removesuffix(".json") not in keep | manifests_only]
    buckets = _unused_buckets(store, {e.name for e in roots} - {e.name for e in manifests}, cutoff)
    blobs = [e for d in os.scandir(store.blobs) for e in os.scandir(d.path)
             if e.name not in referenced and _old(e, cutoff)]
    store.forget([e.name for e in blobs])      # aliases first, so nobody reuses a blob going away
    # what a writer killed mid-write left (a writer alive touches its file as it writes)
    orphans = [e for e in os.scandir(store.tmp) if _old(e, cutoff)]
    for entry in (*manifests, *buckets, *blobs, *orphans):
        os.unlink(entry.path)
    Quarantine(store).collect()
    return len(manifests), len(blobs)


def _unused_buckets(store: SnapshotStore, roots_left: set[str], cutoff: float) -> list[os.DirEntry]:
    """Manifest buckets no remaining root names (kept, a spare's, or too young to go)."""
    used: set[str] = set()
    for name in roots_left:
        try:
            used.update(store.bucket_ids(name.removesuffix(".json")))
        except (FileNotFoundError, ValueError):
            continue
    return [e for e in os.scandir(store.buckets)
            if e.name.removesuffix(".json") not in used and _old(e, cutoff)]


def _old(entry: os.DirEntry, cutoff: float) -> bool:
    return entry.stat(follow_symlinks=False).st_mtime < cutoff
