"""What a deployment leaves to tidy: the releases retention lets go of, under the app's lease
(a rename each: the newest kept as the app's spare, the rest to the trash), and, after the
lease is let go, the trash emptied, the app's Git mirror kept small (sources/mirror_upkeep.py)
and, now and then, the store, its build layers, builds' leftover scratch folders and the
sources' caches collected — off the deployment's path, so the next deployment of the app
does not wait for them."""
from __future__ import annotations

import logging

from orchestrator.building.collect import collect_layers, remove_stale_scratch, remove_unused_build_homes
from orchestrator.config.settings import AppConfig
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.app_views import AppView
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.releases.retention import (
    collect_garbage,
    kept_revisions,
    kept_snapshots,
    prune_releases,
    releases_pruned,
)
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.releases.spares import empty_trash, spare_snapshots
from orchestrator.runtime.services import Services
from orchestrator.sources import source_for
from orchestrator.sources.cache_gc import collect_caches
from orchestrator.sources.git import GitSource
from orchestrator.sources.mirror_upkeep import keep_up

log = logging.getLogger("sluice.worker")
CLEANING_TTL = 600      # seconds: a worker that dies while cleaning up leaves no key for long


def let_go_of_old_releases(services: Services, app: str, config: AppConfig) -> None:
    """Releases beyond keep_releases out of the way (hold the app's lease)."""
    try:
        view = services.projections.app(app)
        removed = releases_pruned(view, config.keep_releases) if config.hosts else \
            prune_releases(view, services.config.data_dir / "releases" / app, config.keep_releases)
    except OSError as exc:       # the deployment is live; cleaning up can wait for the next one
        log.warning("%s: retention failed: %s", app, exc)
        return
    if removed:
        services.store.append(app, [ev.ReleasesPruned(app=app, at=services.clock.now(),
                                                      releases=removed)], ANY_VERSION)


def cleaning_begins(services: Services, app: str, holder: str) -> None:
    """Say that a clean-up of the app goes on (`sluice:cleaning:{app}`), before the app's lease
    is let go: whoever waits for the app to be left alone sees one key or the other."""
    services.redis.set(keys.cleaning(app), holder, ex=CLEANING_TTL)


def clean_up(services: Services, store: SnapshotStore, holder: str, app: str) -> None:
    """The app's trash emptied and, at most once per gc_interval across workers, the store
    collected (after the app's lease is let go; `cleaning_begins` said it goes on)."""
    cleaning_begins(services, app, holder)
    try:
        empty_trash(services.config.data_dir / "releases" / app)
        _keep_up_mirror(services, app)
        interval = services.config.gc_interval
        if interval <= 0 or services.redis.set(keys.GC, holder, nx=True, ex=int(interval)):
            collect(services, store)
    except OSError as exc:
        log.warning("%s: cleaning up after the deployment failed: %s", app, exc)
    finally:
        services.redis.delete(keys.cleaning(app))


def _keep_up_mirror(services: Services, app: str) -> None:
    """The app's Git mirror without the pins and packs its deployments piled up since the
    last collection; the revisions kept are those of every app fetching from that mirror."""
    config, data_dir = services.config.apps.get(app), services.config.data_dir
    source = source_for(config, data_dir) if config is not None else None
    if config is None or not isinstance(source, GitSource):
        return
    mirror = source.mirror

    def kept() -> set[str]:
        sharing = [name for name, other in services.config.apps.items()
                   if isinstance(s := source_for(other, data_dir), GitSource) and s.mirror == mirror]
        return set().union(*kept_revisions(services.projections.apps(sharing)).values())
    keep_up(mirror, kept, config.keep_releases)


def collect(services: Services, store: SnapshotStore) -> None:
    views, keep, now = _collect_store(services, store)
    collect_layers(store, keep, now)
    remove_stale_scratch(services.config.data_dir / "builds", views, now)
    remove_unused_build_homes(services.config.data_dir / "build-home", services.config.apps.keys(), now)
    collect_caches(services.config.apps, services.config.data_dir, kept_revisions(views))


def collect_on_host(services: Services, store: SnapshotStore, host: str) -> None:
    """A host's own store (issue 19), at most once per gc_interval on that host: what no
    kept snapshot holds goes, as from the central store (a host builds nothing and keeps
    no source: its store is all it has to collect)."""
    interval = services.config.gc_interval
    if interval <= 0 or services.redis.set(keys.host_gc(host), host, nx=True, ex=int(interval)):
        _collect_store(services, store)


def _collect_store(services: Services, store: SnapshotStore) -> tuple[list[AppView], set[str], float]:
    """The store's manifests and blobs no kept snapshot holds (the spares' manifests stay:
    a deployment patches a spare from one); the views, the snapshots kept and when."""
    views = [services.projections.app(name) for name in services.store.apps()]
    keep, now = kept_snapshots(views), services.clock.now()
    collect_garbage(store, keep, now,
                    manifests_only=spare_snapshots(services.config.data_dir / "releases"))
    return views, keep, now
