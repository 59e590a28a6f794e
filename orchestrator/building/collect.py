"""What builds leave behind, removed in the store's collection (workers/runner.py _retain):

- a layer (store/layers/KEY.json) is kept while some kept snapshot holds every entry of it
  (same path, same blob): the store's GC keeps exactly those blobs, so any other layer would
  be a miss anyway. An empty layer (a step that changed nothing) holds nothing to tell its
  snapshots by: it is kept for a day, so a step that changes nothing reruns at most daily.
- a scratch folder (builds/APP/DEPLOYMENT) is removed once its deployment has ended: a worker
  killed mid-build leaves one. Never one of a deployment not ended, which a worker may be
  building in now or retry; a folder of a deployment its app's view does not know (queued
  after the view was read, or an ended one compaction forgot) only past the grace period.
"""
from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path

from orchestrator.building.layers import LayerCache
from orchestrator.core.projections import AppView
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.retention import GRACE_SECONDS
from orchestrator.releases.snapshots import Manifest, SnapshotStore

EMPTY_LAYER_SECONDS = 86400.0


def collect_layers(store: SnapshotStore, keep: Iterable[str], now: float,
                   grace: float = GRACE_SECONDS) -> list[str]:
    """Remove the layers none of the snapshots in `keep` holds whole (nor younger than
    `grace`: a deployment in flight may have just put one). Returns the keys removed."""
    cache = LayerCache(store)
    kept = [m for m in (_manifest(store, s) for s in keep) if m is not None]
    removed = []
    for key in sorted(cache.keys()):
        path = cache.root / f"{key}.json"
        try:
            age = now - path.stat().st_mtime
            layer: Manifest | None = Manifest.parse(path.read_bytes())
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError):
            layer = None        # garbled: a miss for every build, so nothing to keep
        if age < grace or (layer is not None and _wanted(layer, kept, age)):
            continue
        cache.remove(key)
        removed.append(key)
    return removed


def _wanted(layer: Manifest, kept: list[Manifest], age: float) -> bool:
    if not layer.files and not layer.links:
        return age < EMPTY_LAYER_SECONDS
    return any(_holds(snapshot, layer) for snapshot in kept)


def _holds(snapshot: Manifest, layer: Manifest) -> bool:
    files, links = snapshot.files, snapshot.links
    return all(p in files and files[p].sha256 == e.sha256 for p, e in layer.files.items()) \
        and all(links.get(p) == target for p, target in layer.links.items())


def _manifest(store: SnapshotStore, snapshot_id: str) -> Manifest | None:
    try:
        return store.manifest(snapshot_id)
    except FileNotFoundError:
        return None


def remove_stale_scratch(builds: Path, views: Iterable[AppView], now: float,
                         grace: float = GRACE_SECONDS) -> list[Path]:
    """Remove the scratch folders under `builds` ({data_dir}/builds) no build can be using.
    `views`: every app's, read before this is called. Returns the folders removed."""
    by_app = {view.name: view for view in views}
    removed = []
    for app in _folders(builds):
        view = by_app.get(app.name)
        for folder in _folders(app):
            d = view.deployments.get(folder.name) if view else None
            if d is not None and not d.terminal:
                continue
            if d is None and _age(folder, now) < grace:
                continue
            remove_tree(folder)
            removed.append(folder)
    return removed


def remove_unused_build_homes(homes: Path, apps: Collection[str], now: float,
                              grace: float = GRACE_SECONDS) -> list[Path]:
    """Remove the build homes under `homes` ({data_dir}/build-home: a tool's caches, pip's
    and npm's) of apps no longer configured, once untouched for `grace`: an app removed from
    the configuration leaves nothing behind."""
    removed = []
    for home in _folders(homes):
        if home.name not in apps and _age(home, now) >= grace:
            remove_tree(home)
            removed.append(home)
    return removed


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0      # gone meanwhile: nothing to remove


def _folders(parent: Path) -> list[Path]:
    """Sub-folders, but not those starting with a dot (builds/.slots: the build slots' locks)."""
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return []
    return [Path(e.path) for e in sorted(entries, key=lambda e: e.name)
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
