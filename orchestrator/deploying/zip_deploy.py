"""Zip deploy: a zip's files as the app's next deployment (Kudu's /api/zipdeploy and
/api/publish). The zip is checked and stored as a snapshot here, where it arrived; the
deployment then takes the road every deployment takes (build, validation, atomic switch,
activation, health, rollback), with trigger `zipdeploy` and who and what the client said.

Only apps not on continuous deployment (source `manual`) take zips: another source's next
change would overwrite the zip's files. The same zip twice is the same snapshot, and the
second deployment ends skipped: already live.
"""
from __future__ import annotations

from pathlib import Path

from orchestrator.config.api_settings import ApiConfig
from orchestrator.core.errors import NotFound
from orchestrator.deploying.dispatch import Queued, Who, request_deployment
from orchestrator.deploying.import_export import refuse_if_continuous
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.releases.zip_intake import ZipLimits, snapshot_from_zip
from orchestrator.runtime.services import Services

DEFAULT_MESSAGE = "Created via a push deployment"       # Kudu's words for a zip without one


def deploy_zip(services: Services, app: str, zip_path: Path, who: Who) -> Queued:
    """Queue the deployment of the zip at `zip_path` (ZipRefused: nothing of it queued)."""
    refuse_zips(services, app)
    store = SnapshotStore(services.config.data_dir / "store")
    snapshot = snapshot_from_zip(store, zip_path, zip_limits(services.config.api))
    return request_deployment(services, app, snapshot.id, "zipdeploy", snapshot=snapshot.id,
                              who=who)


def refuse_zips(services: Services, app: str) -> None:
    """NotFound, or the reason an app takes no zip, before its body is read."""
    config = services.config.apps.get(app)
    if config is None:
        raise NotFound(f"no app named {app!r}")
    refuse_if_continuous(app, config, "Zip deploy")


def zip_limits(api: ApiConfig) -> ZipLimits:
    return ZipLimits(max_entries=api.max_zip_entries, max_unzipped_bytes=api.max_unzipped_bytes,
                     max_ratio=api.max_zip_ratio)
