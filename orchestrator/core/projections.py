"""App status and deployment history, folded from an app's events.

`fold` is pure. `Projections` keeps the folded view in a cache (Redis, for the services)
together with the stream id it has seen, and catches up from there; deleting the cache and
replaying gives the same view (tests check this).

The cached view is compact: deployments not yet ended, the active one, those whose release
is still on disk and the newest RECENT others; so its cost does not grow with the app's age.
The whole history is a replay of the stream (`Projections.history`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import redis

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.app_views import (
    HOST_FAILED,
    HOST_ROLLED_BACK,
    HOST_SWITCHED,
    HOST_UNHEALTHY,
    AppView,
    DeploymentView,
    DriftView,
    decoded_view,
)
from orchestrator.core.event_log import EventLog, RecordedEvent
from orchestrator.core.statuses import FINAL_STATUS, DeploymentStatus
from orchestrator.core.view_saves import save_views

RECENT = 50
REJECTED = 20       # rejected revisions remembered (a newer revision makes older ones moot)


def fold(view: AppView, recorded: RecordedEvent, compact: bool = True) -> AppView:
    e = recorded.event
    view.version, view.last_id = recorded.version, recorded.id
    _apply(view, e)
    if compact and isinstance(e, (ev.DeploymentQueued, ev.ReleasesPruned)):
        _compact(view)
    return view


def _apply(view: AppView, e: ev.Event) -> None:
    if isinstance(e, ev.ChangeDetected):
        view.last_revision = e.revision
    elif isinstance(e, ev.RevisionRejected):
        view.rejected[e.revision] = e.reason
        view.rejected = dict(list(view.rejected.items())[-REJECTED:])
    elif isinstance(e, ev.DeploymentQueued):
        view.rejected.pop(e.revision, None)     # only an operator queues a rejected revision
        view.deployments[e.deployment_id] = DeploymentView(
            id=e.deployment_id, revision=e.revision, trigger=e.trigger, received_at=e.at,
            snapshot=e.snapshot, preset_snapshot=e.snapshot, origin=e.origin, source=e.source,
            rebuild=e.rebuild, deployer=e.deployer, author=e.author, author_email=e.author_email,
            commit_message=e.commit_message)
    elif isinstance(e, ev.AppPaused):
        view.paused = e.reason
    elif isinstance(e, ev.AppResumed):
        view.paused = None
    elif isinstance(e, ev.ReleasesPruned):
        view.pruned.extend(e.releases)
    elif isinstance(e, ev.DriftDetected):
        since = view.drift.since if view.drift and view.drift.kind == e.kind else e.at
        view.drift = DriftView(e.kind, e.detail, e.repair, e.deployment_id, since)
    elif isinstance(e, ev.DriftRepaired):
        view.drift = None
    elif isinstance(e, ev.HostSwitched | ev.HostFailed | ev.HostRolledBack):
        _fold_host(view, e)
    elif d := view.deployments.get(getattr(e, "deployment_id", "")):
        _fold_deployment(view, d, e)


def _fold_host(view: AppView, e: ev.HostSwitched | ev.HostFailed | ev.HostRolledBack) -> None:
    if isinstance(e, ev.HostSwitched):
        view.hosts[e.host], state = e.deployment_id, HOST_SWITCHED
    elif isinstance(e, ev.HostRolledBack):
        # a release is named by its deployment (releases/materialise.py's release_dir)
        view.hosts[e.host], state = e.release and e.release.rstrip("/").rsplit("/", 1)[-1], HOST_ROLLED_BACK
    else:       # switched, then taken back there: the release itself is at fault
        state = f"{HOST_UNHEALTHY if e.rolled_back else HOST_FAILED}: {e.reason}"
    if d := view.deployments.get(e.deployment_id):
        d.hosts = {**(d.hosts or {}), e.host: state}


def _compact(view: AppView) -> None:
    """Forget ended deployments nothing refers to any more (only those: an ended deployment
    gets no further events, so a replay that compacts the same way gives the same view)."""
    kept = set(view.kept_releases())
    needed = {d.id for d in view.deployments.values() if not d.terminal
              or d.id == view.active_deployment or d.release in kept}
    recent = [k for k in view.deployments if k not in needed][-RECENT:]
    keep = needed | set(recent)
    view.deployments = {k: d for k, d in view.deployments.items() if k in keep}
    releases = {d.release for d in view.deployments.values()}
    view.pruned = [r for r in view.pruned if r in releases]


def _fold_deployment(view: AppView, d: DeploymentView, e: ev.Event) -> None:
    if e.type in FINAL_STATUS:
        d.status, d.ended_at = FINAL_STATUS[e.type], e.at
    if isinstance(e, ev.DeploymentStarted):
        d.status, d.attempts = DeploymentStatus.BUILDING, e.attempt
        d.started_at = d.started_at or e.at
    elif isinstance(e, ev.SnapshotBuilt):
        d.status, d.snapshot, d.source = DeploymentStatus.DEPLOYING, e.snapshot, e.source
        d.source_snapshot = e.snapshot
        if e.author or e.commit_message:
            d.author, d.author_email, d.commit_message = e.author, e.author_email, e.commit_message
        d.message = f"snapshot of {e.files} files ({e.blobs_added} new blobs)"
    elif isinstance(e, ev.BuildStarted):
        d.message = f"building: {', '.join(e.steps)}"
    elif isinstance(e, ev.BuildSucceeded):
        d.snapshot, d.layers = e.snapshot, e.layers
        d.message = "build " + ("cached" if e.cached else f"done in {e.seconds:.1f}s")
    elif isinstance(e, ev.DeploymentSwitched):
        d.status, d.switched, d.previous = DeploymentStatus.ACTIVATING, e.release, e.previous
        d.resumed += e.again
        d.message = "switched; activating"
    elif isinstance(e, ev.ActivationFailed):
        d.message = f"activation failed: {e.reason}"
        d.rollback = None if e.kept else e.reason
    elif isinstance(e, ev.HealthCheckStarted):
        d.status, d.message = DeploymentStatus.VERIFYING, f"verifying: {e.url}"
    elif isinstance(e, ev.HealthCheckFailed):
        d.message, d.rollback = e.reason, None if e.kept else e.reason
    elif isinstance(e, ev.DeploymentRolledBack):
        d.rolled_back, d.message = True, e.how
    elif isinstance(e, ev.DeploymentRetrying):
        d.status = DeploymentStatus.PENDING
        d.message = f"attempt {e.attempt} failed, retrying in {e.retry_in:.1f}s: {e.reason}"
    elif isinstance(e, ev.DeploymentSucceeded):
        d.snapshot, d.release, d.message = e.snapshot, e.release, "live"
        view.active_deployment = d.id
    elif isinstance(e, ev.DeploymentSkipped):
        d.snapshot, d.message = e.snapshot, e.reason
    elif isinstance(e, ev.DeploymentFailed):
        d.message = e.reason
    elif isinstance(e, ev.DeploymentSuperseded):
        d.message = f"superseded by {e.by}"


def replay(name: str, recorded: list[RecordedEvent], compact: bool = True) -> AppView:
    view = AppView(name=name)
    for r in recorded:
        fold(view, r, compact)
    return view


class ViewCache(Protocol):
    """Where folded views are kept between commands: a redis.Redis client, or a dict-like."""

    def get(self, name: str, /) -> Any: ...

    def set(self, name: str, value: bytes, /) -> Any: ...

    def delete(self, name: str, /) -> Any: ...

    def mget(self, names: list[str], /) -> Any: ...

    def mset(self, values: Mapping[str, bytes], /) -> Any: ...


class Projections:
    def __init__(self, store: EventLog, cache: ViewCache | None = None):
        self.store = store
        self.cache = cache      # None: every view is a replay of the app's stream

    def app(self, name: str) -> AppView:
        """The app's view, caught up with its stream."""
        view = self._cached(name) or AppView(name=name)
        new = self.store.read(name, after_id=view.last_id)
        for r in new:
            fold(view, r)
        if new:
            self._save([view])
        return view

    def apps(self, names: Iterable[str]) -> list[AppView]:
        """`[self.app(name) for name in names]` in a few round trips whatever their number:
        the cached views in one read, the streams that moved since caught up in one more,
        and the views that moved saved in one write."""
        names = list(names)
        cached = self.cache.mget([keys.app_projection(n) for n in names]) \
            if self.cache is not None and names else [None] * len(names)
        views = [decoded_view(raw) or AppView(name=name) for name, raw in zip(names, cached)]
        new = self.store.read_many({name: view.last_id for name, view in zip(names, views)})
        for name, view in zip(names, views):
            for r in new[name]:
                fold(view, r)
        self._save([view for view in views if new[view.name]])
        return views

    def _save(self, views: list[AppView]) -> None:
        """Keep the views that moved for the next reader; in Redis, only while their streams
        still hold what they folded (core/view_saves.py)."""
        if self.cache is None or not views:
            return
        if isinstance(self.cache, redis.Redis):
            save_views(self.cache, [(keys.app_projection(v.name), keys.app_events(v.name),
                                     v.last_id or "0-0", v.to_json()) for v in views])
        else:
            self.cache.mset({keys.app_projection(v.name): v.to_json() for v in views})

    def _cached(self, name: str) -> AppView | None:
        return decoded_view(self.cache.get(keys.app_projection(name)) if self.cache is not None else None)

    def history(self, name: str) -> AppView:
        """The app's view with every deployment it ever had (a full replay)."""
        return replay(name, self.store.read(name), compact=False)

    def rebuild(self, name: str) -> AppView:
        if self.cache is not None:
            self.cache.delete(keys.app_projection(name))
        return self.app(name)
