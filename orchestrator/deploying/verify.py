"""`sluice verify`: the live releases and the store's blobs hashed against the sha256 they
should hold; and the repair: what is corrupt quarantined (releases/integrity.py), and every app
whose live release serves quarantined content redeployed, which fetches it from the source.

A release's file and its store blob are one inode, so content is hashed once per inode; a
corrupt blob is corrupt in every release linking it, the kept ones too (a rollback target).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.deploying.dispatch import Queued
from orchestrator.deploying.operator_actions import redeploy
from orchestrator.releases.integrity import Quarantine, sha256_of
from orchestrator.releases.scrub import blobs_after
from orchestrator.releases.snapshots import Manifest, SnapshotStore
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.verify")

MISSING = "missing"


@dataclass(frozen=True)
class Finding:
    blob: str                   # the sha256 the content should have
    actual: str                 # what it hashes to, or MISSING
    file: str                   # on disk
    app: str | None = None      # None: a blob of the store
    path: str | None = None     # in the release
    deployment: str | None = None
    live: bool = False

    def describe(self) -> str:
        found = "is missing" if self.actual == MISSING else f"hashes to {self.actual[:12]}"
        if self.app is None:
            return f"store: blob {self.blob} {found}"
        which = "live release" if self.live else "kept release"
        return f"{self.app}: {self.path}: {found} in the {which} of deployment " \
               f"{self.deployment}, not to blob {self.blob}"


@dataclass
class Report:
    files: int = 0
    blobs: int = 0
    live: list[str] = field(default_factory=list)           # apps whose live release was hashed
    nothing_live: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


class _Hashes:
    def __init__(self):
        self._by_inode: dict[tuple[int, int], str] = {}

    def of(self, path: str) -> str:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return MISSING
        key = (st.st_dev, st.st_ino)
        if key not in self._by_inode:
            self._by_inode[key] = sha256_of(path)
        return self._by_inode[key]


def verify(services: Services, store: SnapshotStore, app: str | None = None) -> Report:
    """Each app's (or `app`'s) live release against its manifest, then the store's blobs (only
    those `app`'s live release uses, with `app`) against their names, then the kept releases
    for the corrupt blobs they link."""
    report, hashes = Report(), _Hashes()
    views = {name: services.projections.app(name) for name in ([app] if app else services.config.apps)}
    used: set[str] = set()
    for name, view in views.items():
        live = next(_releases(store, view, live_only=True), None)
        if live is None:
            report.nothing_live.append(name)
            continue
        d, manifest = live
        report.live.append(name)
        used.update(e.sha256 for e in manifest.files.values())
        for path, entry in manifest.files.items():
            report.files += 1
            file = f"{d.release}/{path}"
            if (actual := hashes.of(file)) != entry.sha256:
                report.findings.append(Finding(entry.sha256, actual, file, name, path, d.id, True))
    corrupt = set()
    for sha in sorted(used) if app else _all_blobs(store):
        report.blobs += 1
        if (actual := hashes.of(store.blob_path(sha))) not in (sha, MISSING):
            corrupt.add(sha)
            report.findings.append(Finding(sha, actual, store.blob_path(sha)))
    report.findings += _kept_sharing(store, views, corrupt)
    return report


def _all_blobs(store: SnapshotStore) -> Iterator[str]:
    after = ""
    while batch := blobs_after(store, after, 1000):
        yield from batch
        after = batch[-1]


def _releases(store: SnapshotStore, view: AppView,
              live_only: bool = False) -> Iterator[tuple[DeploymentView, Manifest]]:
    """The app's releases on disk with their manifests, the live one first, each once."""
    active, kept = view.active, set(view.kept_releases())
    seen: set[str] = set()
    others = [] if live_only else [d for d in view.deployments.values() if d.release in kept]
    for d in ([active] if active else []) + others:
        if d.release and d.release not in seen and d.snapshot and os.path.isdir(d.release):
            seen.add(d.release)
            try:
                yield d, store.manifest(d.snapshot)
            except FileNotFoundError:
                continue


def _kept_sharing(store: SnapshotStore, views: dict[str, AppView], corrupt: set[str]) -> list[Finding]:
    """The files of kept (not live) releases that are the inode of a corrupt blob."""
    found = []
    for name, view in views.items() if corrupt else ():
        for d, manifest in _releases(store, view):
            if view.active and d.release == view.active.release:
                continue
            for path, entry in manifest.files.items():
                file = f"{d.release}/{path}"
                if entry.sha256 in corrupt and _same(file, store.blob_path(entry.sha256)):
                    found.append(Finding(entry.sha256, sha256_of(file), file, name, path, d.id))
    return found


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except FileNotFoundError:
        return False


def quarantine_findings(store: SnapshotStore, findings: list[Finding]) -> int:
    """Take the corrupt blobs out of the store and record the releases' own corrupt copies,
    so the apps' next deployments rebuild them; returns the blobs quarantined."""
    quarantine, blobs = Quarantine(store), 0
    for f in findings:
        if f.app is None and quarantine.add_blob(f.blob) is not None:
            blobs += 1
    for f in findings:
        if f.app is not None and f.actual != MISSING and not quarantine.holds(f.file):
            quarantine.add_copy(f.blob, f.file)
    return blobs


def redeploy_damaged(services: Services, store: SnapshotStore) -> dict[str, Queued]:
    """Redeploy each app whose live release serves quarantined content: the worker then
    rebuilds it, fetching that content from the source (workers/runner.py)."""
    quarantine, queued = Quarantine(store), dict[str, Queued]()
    if not quarantine.entries():
        return queued
    for name in services.config.apps:
        live = next(_releases(store, services.projections.app(name), live_only=True), None)
        files = quarantine.damaged(live[1], live[0].release or "") if live else []
        if files:
            queued[name] = redeploy(services, name)
            log.warning("%s: the live release serves corrupt content (%s): redeploying it as "
                        "deployment %s", name, ", ".join(files[:5]), queued[name].deployment_id,
                        extra={"app": name})
    return queued
