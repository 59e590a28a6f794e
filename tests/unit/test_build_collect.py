"""What builds leave behind goes with the store's collection: layers no kept snapshot holds,
scratch folders of deployments that ended; on a real store and real folders."""
import io
import os
import time

import pytest

from orchestrator.building.collect import (
    EMPTY_LAYER_SECONDS,
    collect_layers,
    remove_stale_scratch,
    remove_unused_build_homes,
)
from orchestrator.building.layers import LayerCache, overlay
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.releases.retention import collect_garbage, kept_snapshots
from orchestrator.releases.snapshots import FileEntry, Manifest, SnapshotStore

OLD = "aa" * 32
NEW = "bb" * 32
HOUR = 3600.0


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


def manifest(store, files: dict[str, bytes], links: dict[str, str] | None = None) -> Manifest:
    writer = store.builder()
    for path, data in files.items():
        writer.add_stream(path, io.BytesIO(data))
    for path, target in (links or {}).items():
        writer.add_symlink(path, target)
    return writer.seal().manifest


def layer_of(store, files: dict[str, bytes], links: dict[str, str] | None = None) -> Manifest:
    entries = {p: store.put_stream(io.BytesIO(data)) for p, data in files.items()}
    return Manifest({p: FileEntry(e.sha256, e.size, False) for p, e in entries.items()}, links or {})


def put_layer(store, key: str, layer: Manifest, age: float = HOUR) -> None:
    LayerCache(store).put(key, layer)
    then = time.time() - age
    os.utime(store.root / "layers" / f"{key}.json", (then, then))


def deployed(store, source: Manifest, layer: Manifest) -> str:
    return store.save_manifest(overlay(source, layer, ".python_packages"))


def test_a_layer_is_kept_while_a_kept_snapshot_holds_it_and_removed_with_the_last_one(store):
    source = manifest(store, {"requirements.txt": b"alpha\n", "app.py": b"1\n"})
    old = layer_of(store, {".python_packages/alpha.py": b"alpha 1\n"}, {".python_packages/a": "alpha.py"})
    new = layer_of(store, {".python_packages/alpha.py": b"alpha 2\n"})
    put_layer(store, OLD, old)
    put_layer(store, NEW, new)
    first, second = deployed(store, source, old), deployed(store, source, new)

    assert collect_layers(store, {first, second}, time.time()) == []
    assert collect_layers(store, {second}, time.time()) == [OLD]

    assert LayerCache(store).keys() == {NEW}
    assert LayerCache(store).get(NEW) == new


def test_a_layer_whose_file_a_kept_snapshot_holds_with_other_bytes_is_not_held(store):
    source = manifest(store, {"app.py": b"1\n"})
    layer = layer_of(store, {".python_packages/alpha.py": b"alpha 1\n", ".python_packages/beta.py": b"b\n"})
    rebuilt = layer_of(store, {".python_packages/alpha.py": b"alpha 1\n", ".python_packages/beta.py": b"B\n"})
    put_layer(store, OLD, layer)

    assert collect_layers(store, {deployed(store, source, rebuilt)}, time.time()) == [OLD]


def test_a_layer_put_within_the_grace_period_is_kept_though_no_snapshot_holds_it_yet(store):
    put_layer(store, OLD, layer_of(store, {".python_packages/alpha.py": b"alpha\n"}), age=10)

    assert collect_layers(store, set(), time.time()) == []
    assert LayerCache(store).keys() == {OLD}


def test_an_empty_layer_is_kept_for_a_day_then_removed(store):
    put_layer(store, OLD, Manifest({}, {}), age=EMPTY_LAYER_SECONDS - HOUR)
    put_layer(store, NEW, Manifest({}, {}), age=EMPTY_LAYER_SECONDS + HOUR)

    assert collect_layers(store, set(), time.time()) == [NEW]


def test_a_garbled_layer_file_is_removed_once_past_the_grace_period(store):
    path = LayerCache(store).root / f"{OLD}.json"
    path.write_text("{not json")
    os.utime(path, (time.time() - HOUR, time.time() - HOUR))

    assert collect_layers(store, set(), time.time()) == [OLD]
    assert not path.exists()


def view(name: str, *deployments: DeploymentView) -> AppView:
    live = [d.id for d in deployments if d.status == DeploymentStatus.SUCCESS]
    return AppView(name=name, active_deployment=live[-1] if live else None,
                   deployments={d.id: d for d in deployments})


def deployment(id: str, status: DeploymentStatus, **fields) -> DeploymentView:
    return DeploymentView(id=id, revision="r" + id, trigger="manual", received_at=0.0,
                          status=status, **fields)


def test_the_store_keeps_the_source_snapshot_a_live_build_started_from(store):
    """The next deployment's incremental snapshot starts from it, not from the build's output."""
    source = manifest(store, {"requirements.txt": b"alpha\n", "app.py": b"only in the source\n"})
    source_id = store.save_manifest(source)
    built = store.save_manifest(Manifest({"requirements.txt": source.files["requirements.txt"]}, {}))
    live = deployment("d1", DeploymentStatus.SUCCESS, snapshot=built, source_snapshot=source_id,
                      release="/releases/py/d1")

    collect_garbage(store, kept_snapshots([view("py", live)]), time.time() + HOUR)

    assert store.manifest(source_id) == source
    assert store.read_blob(source.files["app.py"].sha256) == b"only in the source\n"


def scratch(builds, app: str, deployment_id: str, age: float = HOUR):
    folder = builds / app / deployment_id
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "requirements.txt").write_text("alpha\n")
    then = time.time() - age
    os.utime(folder, (then, then))
    return folder


def test_scratch_folders_of_ended_deployments_go_and_those_a_build_may_use_stay(tmp_path):
    builds = tmp_path / "builds"
    (builds / ".slots").mkdir(parents=True)
    ended = scratch(builds, "py", "d1", age=1)          # a worker killed mid-build left it
    running = scratch(builds, "py", "d2")
    retried = scratch(builds, "py", "d3")
    just_queued = scratch(builds, "py", "d4", age=1)    # queued after the views were read
    forgotten = scratch(builds, "py", "d0")             # ended long ago, compacted out of the view
    gone_app = scratch(builds, "removed", "d9")
    views = [view("py", deployment("d1", DeploymentStatus.FAILED),
                  deployment("d2", DeploymentStatus.BUILDING),
                  deployment("d3", DeploymentStatus.PENDING))]

    removed = remove_stale_scratch(builds, views, time.time())

    assert sorted(removed) == sorted([ended, forgotten, gone_app])
    assert running.is_dir() and retried.is_dir() and just_queued.is_dir()
    assert not ended.exists() and (builds / ".slots").is_dir()


def test_no_builds_folder_is_nothing_to_remove(tmp_path):
    assert remove_stale_scratch(tmp_path / "builds", [], time.time()) == []


def test_the_build_home_of_an_app_no_longer_configured_goes_once_untouched_for_a_while(tmp_path):
    homes = tmp_path / "build-home"
    for app in ("kept", "gone", "just-gone"):
        (homes / app / ".cache" / "pip").mkdir(parents=True)
    old = time.time() - 3600
    for app in ("kept", "gone"):
        os.utime(homes / app, (old, old))

    removed = remove_unused_build_homes(homes, {"kept"}, time.time())

    assert removed == [homes / "gone"]
    assert sorted(os.listdir(homes)) == ["just-gone", "kept"]
    assert remove_unused_build_homes(tmp_path / "none", set(), time.time()) == []
