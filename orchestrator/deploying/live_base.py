"""Whether a deployment may start from the live one: take the live source's snapshot as the
base to diff from, patch the release it holds, skip when the snapshots are the same. It may
not (and is then rebuilt from the source, its blobs hashed) when the operator redeploys the
live snapshot, when the store lacks the live manifest, or when the live release serves content
found corrupt."""
from __future__ import annotations

import logging

from orchestrator.core.projections import DeploymentView
from orchestrator.releases.integrity import Quarantine
from orchestrator.releases.snapshots import SnapshotStore

log = logging.getLogger("sluice.worker")


def starts_from_live(store: SnapshotStore, app: str, d: DeploymentView, live: DeploymentView) -> bool:
    return not (_again(d, live) or _lost(store, live) or _damaged(store, app, live))


def _again(d: DeploymentView, live: DeploymentView) -> bool:
    """A redeploy of the live snapshot: the operator asks for it again, so it is rebuilt from
    the store with every blob hashed (a corrupt one then fetched again), not skipped."""
    return d.trigger == "redeploy" and d.preset_snapshot == live.snapshot


def _lost(store: SnapshotStore, live: DeploymentView) -> bool:
    """A build's manifest is not fsynced (it can be made again): a crash may cut it short."""
    try:
        store.manifest(live.snapshot or "")
    except FileNotFoundError:
        return bool(live.snapshot)
    return False


def _damaged(store: SnapshotStore, app: str, live: DeploymentView) -> bool:
    """Whether the live release serves content found corrupt (releases/integrity.py)."""
    quarantine = Quarantine(store)
    if not live.release or not quarantine.entries():
        return False
    files = quarantine.damaged(store.manifest(live.snapshot or ""), live.release)
    if files:
        log.warning("%s: the live release serves corrupt content (%s): rebuilding it from the "
                    "source", app, ", ".join(files[:5]), extra={"app": app})
    return bool(files)
