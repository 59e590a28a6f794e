"""Release folders retention lets go of are recycled, not deleted (issue 16).

Deleting a release costs a walk and an unlink per file of the tree, and building the next
one as a hardlinked copy of the live release costs a link per file again. Instead the newest
release retention lets go of becomes the app's spare, `releases/<app>/.spare-<snapshot>`
(the snapshot it holds, in its name, so the rename that makes it a spare says what it is),
and the next deployment renames the spare into place and patches it to its own snapshot:
one file's work for a one-file change, whatever the tree. Any other release let go moves to
`releases/<app>/.trash/` (one rename, under the app's lease) and is deleted after the lease
is let go.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from orchestrator.releases.removal import remove_tree

SPARE_PREFIX = ".spare-"
TRASH = ".trash"


def is_release(name: str) -> bool:
    """Whether a folder of releases/<app> is a release (not a spare, the trash, a lock)."""
    return not name.startswith(".")


def take_spare(app_releases: Path) -> tuple[Path, str] | None:
    """The app's spare and the snapshot it holds, if it has one (extra spares, left by a
    crash between two renames, go to the trash)."""
    spares = sorted(e for e in _names(app_releases) if e.startswith(SPARE_PREFIX))
    for extra in spares[1:]:
        to_trash(app_releases / extra)
    if not spares:
        return None
    return app_releases / spares[0], spares[0].removeprefix(SPARE_PREFIX)


def make_spare(release: Path, snapshot: str) -> None:
    """Keep a release let go as the app's spare, in place of any spare it had."""
    spare = take_spare(release.parent)
    if spare is not None:
        to_trash(spare[0])
    os.rename(release, release.with_name(SPARE_PREFIX + snapshot))


def spare_snapshots(releases_root: Path) -> set[str]:
    """The snapshots every app's spare holds: the store keeps their manifests, which the
    next deployment patches a spare from."""
    return {name.removeprefix(SPARE_PREFIX) for app in _names(releases_root)
            for name in _names(releases_root / app) if name.startswith(SPARE_PREFIX)}


def to_trash(path: Path) -> None:
    """Move a release folder out of the way in one rename; `empty_trash` deletes it."""
    trash = path.parent / TRASH
    trash.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():     # moving a folder rewrites its '..'
            os.chmod(path, stat.S_IRWXU)
        os.rename(path, trash / f"{path.name}-{secrets.token_hex(4)}")


def empty_trash(app_releases: Path) -> int:
    """Delete what the app's trash holds (another worker may be emptying it too)."""
    trash = app_releases / TRASH
    emptied = 0
    for name in _names(trash):
        with contextlib.suppress(FileNotFoundError):
            remove_tree(trash / name)
            emptied += 1
    return emptied


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
