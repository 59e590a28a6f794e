"""A build on the live build's layers shares its buckets (issue 16): the manifest it seals is
the tree an overlay gives, and only the buckets the source's change touched are new."""
from __future__ import annotations

import io

from orchestrator.building.scratch import overlay
from orchestrator.config.settings import AppConfig
from orchestrator.deploying.build import BuildContext, LiveBuild, _sharing
from orchestrator.releases.manifests import Manifest
from orchestrator.releases.snapshots import Base, SnapshotStore

PACKAGES = {f".python_packages/lib/site-packages/p{i // 50}/m{i}.py": b"pkg %d" % i for i in range(1500)}
CODE = {f"HttpHello/f{i}.py": b"code %d" % i for i in range(300)}


def sealed(store, files, base=None):
    writer = store.builder(base)
    for path, data in files.items():
        writer.add_stream(path, io.BytesIO(data))
    return writer.seal()


def test_a_build_on_the_live_layers_is_the_overlay_and_shares_the_untouched_buckets(tmp_path):
    store = SnapshotStore(tmp_path / "store")
    layer = sealed(store, PACKAGES).manifest
    source = sealed(store, CODE)
    live_built = store.manifest(store.save_manifest(overlay(source.manifest, layer, ".python_packages")))
    changed = sealed(store, {"HttpHello/f7.py": b"changed"}, Base("r1", source.manifest))
    config = AppConfig.model_validate({"target": str(tmp_path / "site")})
    ctx = BuildContext(store, tmp_path, "app", "d2", config, lambda *a, **k: None,
                       live=LiveBuild(store.save_manifest(live_built), source.id, ["k1"]))
    fresh = overlay(changed.manifest, layer, ".python_packages")

    shared = _sharing(ctx, changed, fresh, ["k1"])

    assert store.save_manifest(shared) == store.save_manifest(Manifest(fresh.files, fresh.links))
    mine, live = shared.buckets(), live_built.buckets()
    assert sum(a is not b for a, b in zip(mine.members, live.members)) == 1
    assert _sharing(ctx, changed, fresh, ["k2"]) is fresh       # other layers: nothing shared
