"""Deleting a release: read-only folders at any depth (releases and build trees are made
read-only once built)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

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
