"""Releases: build a snapshot's tree beside the live one, then switch the target symlink
with one rename(2). A crash at any point leaves the previous release live.

A new release starts as a hardlinked copy (`cp -al`) of the live release and is patched
with the difference between the two manifests, so a one-file change writes one file; with
no live release it is built from the store entry by entry. Each blob placed is hashed first
(releases/integrity.py) unless this deployment wrote it itself: what the copy of the live
release carries over is not hashed again, so a one-file change hashes one file.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Collection, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.files import write_whole
from orchestrator.releases.integrity import check_blob
from orchestrator.releases.snapshots import Manifest, SnapshotStore, implied_dirs

BUILDING_SUFFIX = ".building"


@dataclass(frozen=True)
class Previous:
    """A release already on disk and the manifest it was built from."""
    manifest: Manifest
    release: Path


def release_dir(data_dir: Path, app: str, deployment_id: str) -> Path:
    return Path(data_dir) / "releases" / app / deployment_id


def materialise(store: SnapshotStore, manifest: Manifest, release: Path,
                previous: Previous | None = None, fresh: Collection[str] = ()) -> Path:
    """Build the release directory: hardlinks into the store, read-only throughout. Blobs
    not in `fresh` (written by this deployment) are hashed before they are placed: a
    corrupt one is quarantined and CorruptBlob names the file."""
    if release.exists():
        return release          # a release is immutable once built: a retry reuses it
    building = release.with_name(release.name + BUILDING_SUFFIX)
    remove_tree(building)
    building.parent.mkdir(parents=True, exist_ok=True)
    touched: Iterable[str]
    if previous and _hardlink_copy(previous.release, building):
        touched = _patch(store, str(building), previous.manifest, manifest, fresh)
    else:
        building.mkdir()
        touched = _build(store, str(building), manifest, fresh)
    for d in sorted(touched, key=len, reverse=True):
        os.chmod(d, 0o555)
    os.rename(building, release)
    return release


def _hardlink_copy(source: Path, dest: Path) -> bool:
    if not source.is_dir() or shutil.which("cp") is None:
        return False
    done = subprocess.run(["cp", "-al", "--", str(source), str(dest)], capture_output=True)
    if done.returncode != 0:
        remove_tree(dest)
    return done.returncode == 0


def _build(store: SnapshotStore, root: str, manifest: Manifest,
           fresh: Collection[str]) -> list[str]:
    dirs = sorted(implied_dirs((*manifest.files, *manifest.links)))
    for d in dirs:
        os.mkdir(f"{root}/{d}")
    for path in manifest.files:
        _place_file(store, root, path, manifest, fresh)
    for path, target in manifest.links.items():
        os.symlink(target, f"{root}/{path}")
    return [root] + [f"{root}/{d}" for d in dirs]


def _patch(store: SnapshotStore, root: str, old: Manifest, new: Manifest,
           fresh: Collection[str]) -> set[str]:
    """Turn a copy of the release of `old` into the release of `new`, touching only what
    differs; returns the folders it opened for writing (to be made read-only again)."""
    changed_files = [p for p, e in new.files.items() if old.files.get(p) != e]
    changed_links = [p for p, t in new.links.items() if old.links.get(p) != t]
    gone = [p for p in (*old.files, *old.links) if p not in new.files and p not in new.links]
    opened: set[str] = set()

    def open_folder(folder: str) -> None:
        if folder not in opened:
            os.chmod(folder, 0o755)
            opened.add(folder)

    for path in (*gone, *changed_files, *changed_links):
        if path in old.files or path in old.links:
            open_folder(os.path.dirname(f"{root}/{path}"))
            os.unlink(f"{root}/{path}")
    _remove_emptied_folders(root, gone, open_folder, opened)
    for path in changed_files:
        _make_folders(root, path, open_folder, opened)
        _place_file(store, root, path, new, fresh)
    for path in changed_links:
        _make_folders(root, path, open_folder, opened)
        os.symlink(new.links[path], f"{root}/{path}")
    return opened


def _remove_emptied_folders(root: str, gone: list[str], open_folder, opened: set[str]) -> None:
    """Folders left empty by removals go too: a manifest implies no empty folders."""
    for d in sorted(implied_dirs(gone), key=len, reverse=True):
        full = f"{root}/{d}"
        if os.path.isdir(full) and not os.path.islink(full) and not os.listdir(full):
            open_folder(os.path.dirname(full))
            os.rmdir(full)
            opened.discard(full)


def _make_folders(root: str, path: str, open_folder, opened: set[str]) -> None:
    folder = os.path.dirname(f"{root}/{path}")
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    open_folder(folder)
    for d in reversed(missing):
        os.mkdir(d)
        opened.add(d)


def _place_file(store: SnapshotStore, root: str, path: str, manifest: Manifest,
                fresh: Collection[str]) -> None:
    entry, dest = manifest.files[path], f"{root}/{path}"
    try:
        if entry.sha256 not in fresh:
            check_blob(store, entry.sha256, path)
        if entry.executable:        # its own inode, so the shared blob keeps mode 0444
            shutil.copyfile(store.blob_path(entry.sha256), dest)
            os.chmod(dest, 0o555)
        else:
            os.link(store.blob_path(entry.sha256), dest)
    except FileNotFoundError:
        if os.path.isdir(os.path.dirname(dest)):
            raise TransientError(f"{path}: its content was garbage-collected while "
                                 "deploying; it will be fetched again") from None
        raise


def switch(target: Path, release: str | os.PathLike[str], token: int | None = None,
           still_holds: Callable[[], None] | None = None) -> None:
    """Point `target` at `release` atomically (symlink + rename).

    With a fencing token: refused (Fenced) if a holder of a newer token has switched this
    target already, and `still_holds` must confirm the lease under the target's lock, so a
    worker that lost its lease can never switch afterwards."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(f".{target.name}.sluice-lock")):
        if token is not None:
            _advance_fence(target, token)
        if still_holds is not None:
            still_holds()
        _claim_target(target)
        tmp = target.with_name(f".{target.name}.sluice-{os.getpid()}")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(release, tmp)
        os.replace(tmp, target)


def unswitch(target: Path, token: int | None = None,
             still_holds: Callable[[], None] | None = None) -> None:
    """Remove the target symlink (a first release rolled back: nothing was live before),
    fenced as `switch` is."""
    target = Path(target)
    with _locked(target.with_name(f".{target.name}.sluice-lock")):
        if token is not None:
            _advance_fence(target, token)
        if still_holds is not None:
            still_holds()
        if target.is_symlink():
            target.unlink()


class Fenced(TransientError):
    """A newer lease holder has switched the target: this holder's work is stale."""


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _advance_fence(target: Path, token: int) -> None:
    fence = target.with_name(f".{target.name}.sluice-fence")
    try:
        highest = int(fence.read_text() or 0)
    except (FileNotFoundError, ValueError):
        highest = 0
    if token < highest:
        raise Fenced(f"fencing token {token} is older than {highest}, which switched "
                     f"{target} already; not switching")
    write_whole(fence, str(token))


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


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: Path) -> None:
    """rmtree for read-only releases, at any depth: each folder gets its write bit back
    before it is emptied. A loop, where shutil.rmtree and os.walk recurse (Python 3.11) and
    stop near 1,000 levels; and each entry reached from the open folder above it, with one
    folder open at a time, so no path handled is longer than a name (a deep tree's absolute
    paths can pass PATH_MAX)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    os.chmod(path, stat.S_IRWXU)
    folder = os.open(path, _FOLDER)
    try:
        pending = [("", _empty_but_folders(folder))]    # (name, subfolders left), top down
        while pending:
            name, subfolders = pending[-1]
            if subfolders:
                child = subfolders.pop()
                folder = _reopen(folder, child)
                pending.append((child, _empty_but_folders(folder)))
                continue
            pending.pop()
            if pending:
                folder = _reopen(folder, "..")
                os.rmdir(name, dir_fd=folder)
    finally:
        os.close(folder)
    os.rmdir(path)


def _reopen(folder: int, name: str) -> int:
    """The folder `name` relative to the open `folder`, which is then closed."""
    opened = os.open(name, _FOLDER, dir_fd=folder)
    os.close(folder)
    return opened


def _empty_but_folders(folder: int) -> list[str]:
    """Unlink what the open folder holds but folders, which are made writable and named."""
    with os.scandir(folder) as entries:
        listed = list(entries)
    subfolders = []
    for entry in listed:
        if entry.is_dir(follow_symlinks=False):
            os.chmod(entry.name, stat.S_IRWXU, dir_fd=folder)
            subfolders.append(entry.name)
        else:
            os.unlink(entry.name, dir_fd=folder)
    return subfolders
