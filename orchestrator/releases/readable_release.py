"""Where the central machine reads an app's live files (`sluice export`, FTP, Kudu's file
routes): the app's target, or, for an app on hosts (issue 19), whose releases are on those
hosts only, a copy of its active snapshot made from the central store the first time it is
read after a deployment: `{data_dir}/readable/APP/DEPLOYMENT` (hardlinks into the store,
read-only, as a release is) behind the link `{data_dir}/readable/APP/live`, which callers
resolve as they resolve a target. Only the active deployment's copy is kept."""
from __future__ import annotations

import os
from pathlib import Path

from orchestrator.releases.materialise import locked, materialise, point_at
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.services import Services

LIVE = "live"


def readable_target(services: Services, app: str) -> Path:
    """The app's target, or the link to the copy of its active snapshot (no link while
    nothing is live)."""
    config = services.config.apps[app]
    if not config.hosts:
        return Path(config.target)
    folder = services.config.data_dir / "readable" / app
    folder.mkdir(parents=True, exist_ok=True)
    active = services.projections.app(app).active
    snapshot = active.snapshot if active is not None else None
    wanted = folder / active.id if active is not None and snapshot else None
    link = folder / LIVE
    with locked(folder / ".lock"):      # API threads and FTP sessions may ask at once
        if wanted is not None and snapshot and not wanted.is_dir():
            store = SnapshotStore(services.config.data_dir / "store")
            materialise(store, store.manifest(snapshot), wanted)
        if wanted is None or os.path.realpath(link) != str(wanted):
            point_at(link, wanted)
        for old in folder.iterdir():
            if not old.name.startswith(".") and old.name != LIVE and old != wanted:
                remove_tree(old)
    return link
