"""An app's live release read from outside (Kudu's vfs and zip APIs): confined to it.

The target symlink is resolved once, when a request begins, so a deployment switching it
meanwhile cannot hand the request half of one release and half of another. A path is then
looked up inside that release only: a symlink whose real path leads out of it (to /etc, to
another release, to the store) is never followed, and is answered as a missing file is,
so nothing about the outside shows through. Symlinks that stay inside are followed, as the
app itself would follow them.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import NotFound


@dataclass(frozen=True)
class LiveRelease:
    app: str
    root: str               # the release's real path, resolved once


@dataclass(frozen=True)
class Listed:
    """One entry of a folder, as stat'ed through links that stay inside the release."""
    name: str
    folder: bool
    size: int
    mtime: float
    ctime: float
    leaves: bool            # a symlink leading out of the release: listed, never followed


def live_release(app: str, target: Path) -> LiveRelease:
    root = os.path.realpath(target)
    if not os.path.islink(target) or not os.path.isdir(root):
        raise NotFound(f"app {app!r} has nothing live yet: deploy it first")
    return LiveRelease(app, root)


def locate(release: LiveRelease, relative: str) -> str:
    """The real path of `relative` (parts joined by '/') inside the release."""
    found = os.path.realpath(os.path.join(release.root, *relative.split("/")))
    if not _inside(release, found) or not os.path.exists(found):
        raise NotFound(f"{relative!r} is not in the live release of {release.app!r}")
    return found


def listing(release: LiveRelease, folder: str) -> list[Listed]:
    with os.scandir(folder) as entries:
        return [_listed(release, entry) for entry in sorted(entries, key=lambda e: e.name)]


def etag(info: os.stat_result) -> str:
    """Kudu's shape (16 hex digits in quotes) over what identifies a release file's content:
    files are hardlinks into the content-addressed store, so one inode is one content."""
    key = f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}".encode()
    return f'"{hashlib.blake2b(key, digest_size=8).hexdigest()}"'


def _listed(release: LiveRelease, entry: os.DirEntry) -> Listed:
    real = os.path.realpath(entry.path) if entry.is_symlink() else entry.path
    leaves = not _inside(release, real) or not os.path.exists(real)
    info = entry.stat(follow_symlinks=False) if leaves else os.stat(real)
    folder = not leaves and stat.S_ISDIR(info.st_mode)
    return Listed(entry.name, folder, 0 if folder or leaves else info.st_size, info.st_mtime,
                  info.st_ctime, leaves)


def _inside(release: LiveRelease, real: str) -> bool:
    return real == release.root or real.startswith(release.root + os.sep)
