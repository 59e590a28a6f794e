"""Whether a deployment starts from the live one (deploying/live_base.py)."""
from __future__ import annotations

from orchestrator.core.app_views import DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.live_base import starts_from_live
from orchestrator.releases.manifests import FileEntry, Manifest
from orchestrator.releases.snapshots import SnapshotStore


def deployment(id: str, snapshot: str | None = None, trigger: str = "poll", preset: str | None = None):
    return DeploymentView(id, "a" * 40, trigger, 1.0, DeploymentStatus.SUCCESS, snapshot=snapshot,
                          preset_snapshot=preset)


def built_snapshot(store: SnapshotStore) -> str:
    return store.save_manifest(Manifest({"a.txt": FileEntry("0" * 64, 1)}, {}), durable=False)


def test_a_change_starts_from_the_live_deployment(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    live = deployment("d1", built_snapshot(store))
    assert starts_from_live(store, "app", deployment("d2"), live)


def test_a_live_build_manifest_cut_short_by_a_crash_is_not_started_from(tmp_path):
    live = deployment("d1", built_snapshot(SnapshotStore(tmp_path / "store")))
    (tmp_path / "store" / "manifests" / f"{live.snapshot}.json").write_bytes(b"")

    after_the_crash = SnapshotStore(tmp_path / "store")

    assert not starts_from_live(after_the_crash, "app", deployment("d2"), live)


def test_a_redeploy_of_the_live_snapshot_is_rebuilt_not_started_from(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    live = deployment("d1", built_snapshot(store))
    assert not starts_from_live(store, "app", deployment("d2", trigger="redeploy", preset=live.snapshot), live)
