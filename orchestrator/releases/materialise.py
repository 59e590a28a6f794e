"""Releases: build a snapshot's tree beside the live one, then switch the target symlink
with one rename(2). A crash at any point leaves the previous release live.

A new release starts as the app's spare (a release retention let go of, releases/spares.py)
renamed into place, or else as a hardlinked copy (`cp -al`) of the live release, and is
patched with the difference between the two manifests, so a one-file change writes one file
(and, from a spare, links nothing else); with neither it is built from the store entry by
entry. Each blob placed is hashed first
(releases/integrity.py) unless this deployment wrote it itself: what the copy of the live
release carries over is not hashed again, so a one-file change hashes one file.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Collection, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import PermanentError, TransientError
from orchestrator.core.files import write_whole
from orchestrator.releases.integrity import check_blob
from orchestrator.releases.manifests import Buckets, FileEntry
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.snapshots import Manifest, SnapshotStore
from orchestrator.releases.spares import take_spare, to_trash
from orchestrator.releases.tree_checks import implied_dirs

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
    recycled = _recycle(store, building, manifest)
    if recycled is not None:
        touched = _patch(store, str(building), recycled, manifest, fresh)
    elif previous and _hardlink_copy(previous.release, building):
        touched = _patch(store, str(building), previous.manifest, manifest, fresh)
    else:
        building.mkdir()
        touched = _build(store, str(building), manifest, fresh)
    for d in sorted(touched, key=len, reverse=True):
        os.chmod(d, 0o555)
    os.rename(building, release)
    return release


def _recycle(store: SnapshotStore, building: Path, new: Manifest) -> Manifest | None:
    """The app's spare renamed to `building`, and the manifest it holds as far as it can
    differ from `new`; None without one (or when the store no longer has its manifest: then
    it goes to the trash)."""
    spare = take_spare(building.parent)
    if spare is None:
        return None
    try:
        manifest = _as_far_as_it_differs(store, spare[1], new)
    except (FileNotFoundError, ValueError):
        to_trash(spare[0])
        return None
    os.rename(spare[0], building)
    return manifest


def _as_far_as_it_differs(store: SnapshotStore, snapshot_id: str, other: Manifest) -> Manifest:
    """The snapshot's manifest as far as it can differ from `other` (stored, so its buckets'
    ids are known): only the buckets whose ids differ are read (a bucket of the same id holds
    the same entries, so `other.changed(it)` is exact), not the whole tree; the whole
    manifest when the two are not bucketed alike."""
    ids, theirs = store.bucket_ids(snapshot_id), other.buckets()
    if len(ids) != theirs.count or None in theirs.ids:
        return store.manifest(snapshot_id)
    files: dict[str, FileEntry] = {}
    links: dict[str, str] = {}
    members = list(theirs.members)
    for b, bucket_id in enumerate(ids):
        if bucket_id != theirs.ids[b]:
            bucket_files, bucket_links, members[b] = store.bucket(bucket_id)
            files.update(bucket_files)
            links.update(bucket_links)
    return Manifest(files, links, Buckets(tuple(members), tuple(ids)))


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
    differ = new.changed(old)       # from the buckets that differ: one file's work for one file
    changed_files = [p for p in differ if p in new.files]
    changed_links = [p for p in differ if p in new.links]
    gone = [p for p in differ if p not in new.files and p not in new.links]
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
    with locked(target.with_name(f".{target.name}.sluice-lock")):
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
    with locked(target.with_name(f".{target.name}.sluice-lock")):
        if token is not None:
            _advance_fence(target, token)
        if still_holds is not None:
            still_holds()
        if target.is_symlink():
            target.unlink()


def point_at(target: Path, release: str | os.PathLike[str] | None, token: int | None = None,
             still_holds: Callable[[], None] | None = None) -> None:
    """`switch` to `release`, or `unswitch` for None (what a target showed before its first
    release: nothing)."""
    if release is None:
        unswitch(target, token, still_holds)
    else:
        switch(target, release, token, still_holds)


class Fenced(TransientError):
    """A newer lease holder has switched the target: this holder's work is stale."""


@contextmanager
def locked(lock_path: Path):
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
