"""Build layers and scratch folders go with the store's collection (issue 14: "layers are
garbage-collected with snapshots"), with the session's real worker and the runner's own
retention. Offline: packages come from a wheelhouse the test writes."""
from __future__ import annotations

import os
import time
from pathlib import Path

from orchestrator.building.layers import LayerCache
from orchestrator.core import events as ev
from orchestrator.deploying.housekeeping import clean_up, let_go_of_old_releases
from orchestrator.releases.snapshots import SnapshotStore
from tests.integration.flow import sync_and_wait
from tests.wheelhouse import build_succeeded, python_function_app, write_wheel


def age(root: Path, seconds: float = 3600) -> None:
    """As if everything under root had been written `seconds` ago: past the store's grace."""
    then = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)


def snapshot_of(services, app: str, deployment_id: str) -> ev.SnapshotBuilt:
    return next(r.event for r in services.store.read(app) if isinstance(r.event, ev.SnapshotBuilt)
                and r.event.deployment_id == deployment_id)


def test_a_layer_no_kept_release_holds_is_collected_and_the_live_ones_stay(workspace, tmp_path):
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "alpha", "1.0")
    write_wheel(wheels, "gamma", "3.0")
    repo, services = python_function_app(workspace, wheels, keep_releases=1,
                                         settings={"gc_interval": 0})
    store = SnapshotStore(workspace.data_dir / "store")
    first = sync_and_wait(services, "py", timeout=120)
    repo.commit({"requirements.txt": "gamma==3.0\n"})
    assert sync_and_wait(services, "py", timeout=120).status == "success"
    repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v3'\n"})
    assert sync_and_wait(services, "py", timeout=120).status == "success"     # gamma's layer, cached
    assert len(LayerCache(store).keys()) == 2
    killed = workspace.data_dir / "builds" / "py" / first.id / "src"     # a worker killed mid-build
    killed.mkdir(parents=True)
    (killed / "requirements.txt").write_text("alpha==1.0\n")

    age(workspace.data_dir / "store")
    ctx = workspace.worker_context(services)
    let_go_of_old_releases(services, "py", services.config.apps["py"])
    clean_up(services, ctx.store, ctx.holder, "py")

    assert len(LayerCache(store).keys()) == 1          # alpha's: its only release was pruned
    assert not killed.parent.exists()
    repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v4'\n"})
    code_change = sync_and_wait(services, "py", timeout=120)
    assert code_change.status == "success", code_change.message
    assert build_succeeded(services, "py", code_change.id).cached
    assert snapshot_of(services, "py", code_change.id).incremental    # from the live source snapshot
    repo.commit({"requirements.txt": "alpha==1.0\n"})
    back = sync_and_wait(services, "py", timeout=120)
    assert back.status == "success", back.message
    assert not build_succeeded(services, "py", back.id).cached
