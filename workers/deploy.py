"""Releases: build a snapshot's tree beside the live one, then switch the target symlink
with one rename(2). A crash at any point leaves the previous release live."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from orchestrator.errors import PermanentError
from .snapshots import Manifest, SnapshotStore

BUILDING_SUFFIX = ".building"


def release_dir(data_dir: Path, app: str, deployment_id: str) -> Path:
    return Path(data_dir) / "releases" / app / deployment_id


def materialise(store: SnapshotStore, manifest: Manifest, release: Path) -> Path:
    """Build the release directory from the store: hardlinks for files, read-only tree."""
    if release.exists():
        return release          # a release is immutable once built: a retry reuses it
    building = release.with_name(release.name + BUILDING_SUFFIX)
    remove_tree(building)
    building.mkdir(parents=True)
    dirs = _make_dirs(building, manifest)
    for path, entry in manifest.files.items():
        dest = os.path.join(building, path)
        if entry.executable:
            shutil.copyfile(store.blob_path(entry.sha256), dest)
            os.chmod(dest, 0o555)
        else:
            os.link(store.blob_path(entry.sha256), dest)
    for path, target in manifest.links.items():
        os.symlink(target, os.path.join(building, path))
    for d in sorted(dirs, key=len, reverse=True):
        os.chmod(d, 0o555)
    os.chmod(building, 0o555)
    os.rename(building, release)
    return release


def _make_dirs(root: Path, manifest: Manifest) -> set[str]:
    dirs = {os.path.dirname(p) for p in (*manifest.files, *manifest.links)} - {""}
    made = set()
    for d in sorted(dirs):
        full = os.path.join(root, d)
        os.makedirs(full, exist_ok=True)
        made.add(full)
        parent = os.path.dirname(d)
        while parent:
            made.add(os.path.join(root, parent))
            parent = os.path.dirname(parent)
    return made


def switch(target: Path, release: Path) -> None:
    """Point `target` at `release` atomically (symlink + rename)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _claim_target(target)
    tmp = target.with_name(f".{target.name}.sluice-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(release, tmp)
    os.replace(tmp, target)


def _claim_target(target: Path) -> None:
    if target.is_symlink() or not target.exists():
        return
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
        return
    raise PermanentError(f"target {target} already exists and is not a Sluice symlink; "
                         "move its files away before the first deployment")


def live_release(target: Path) -> Path | None:
    target = Path(target)
    return Path(os.readlink(target)) if target.is_symlink() else None


def remove_tree(path: Path) -> None:
    """rmtree for read-only releases: give directories their write bit back first."""
    if not os.path.lexists(path):
        return
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            full = os.path.join(root, d)
            if not os.path.islink(full):
                os.chmod(full, stat.S_IRWXU)
    os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(path)
