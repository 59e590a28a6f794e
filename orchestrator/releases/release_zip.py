"""A release as a zip (Kudu's `GET /api/zip/...`): what zip deploy takes back unchanged.

Entries sit at the zip's root, as Kudu writes them. Links are never followed: a symlink is a
symlink entry (Unix mode S_IFLNK, its target as its content), whatever it points at, so the
zip deployed again is the same snapshot. Files carry Unix modes that say only what a
snapshot keeps, executable (0755) or not (0644): a release's own files are read-only, which
an unzipped copy should not be. Folders are entries too, so an empty one survives.
"""
from __future__ import annotations

import os
import shutil
import stat
import time
import zipfile
from typing import IO

UNIX = 3
EARLIEST = (1980, 1, 1, 0, 0, 0)        # a zip cannot date anything before 1980
CHUNK = 1024 * 1024


def write_release_zip(folder: str, out: IO[bytes]) -> int:
    """Write everything under `folder` into a zip on `out`; the number of entries."""
    count = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        pending = [""]
        while pending:          # a loop, not os.walk: deep trees do not recurse
            relative = pending.pop()
            subfolders = []
            with os.scandir(os.path.join(folder, relative)) as listed:
                entries = sorted(listed, key=lambda e: e.name)
            for entry in entries:
                name = f"{relative}/{entry.name}" if relative else entry.name
                if entry.is_dir(follow_symlinks=False):
                    _add_folder(archive, name, entry)
                    subfolders.append(name)
                elif entry.is_symlink():
                    _add_link(archive, name, entry)
                else:
                    _add_file(archive, name, entry)
                count += 1
            pending.extend(reversed(subfolders))
    return count


def _info(name: str, entry: os.DirEntry, mode: int) -> zipfile.ZipInfo:
    mtime = time.gmtime(entry.stat(follow_symlinks=False).st_mtime)[:6]
    info = zipfile.ZipInfo(name, max(mtime, EARLIEST))
    info.create_system = UNIX
    info.external_attr = mode << 16
    return info


def _add_folder(archive: zipfile.ZipFile, name: str, entry: os.DirEntry) -> None:
    info = _info(name + "/", entry, stat.S_IFDIR | 0o755)
    info.external_attr |= 0x10           # MS-DOS directory flag, for Windows' tools
    archive.writestr(info, b"")


def _add_link(archive: zipfile.ZipFile, name: str, entry: os.DirEntry) -> None:
    archive.writestr(_info(name, entry, stat.S_IFLNK | 0o777), os.readlink(entry.path).encode(),
                     compress_type=zipfile.ZIP_STORED)


def _add_file(archive: zipfile.ZipFile, name: str, entry: os.DirEntry) -> None:
    st = entry.stat(follow_symlinks=False)
    info = _info(name, entry, stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = st.st_size
    with open(entry.path, "rb") as source, archive.open(info, "w", force_zip64=st.st_size > 2**31) as sink:
        shutil.copyfileobj(source, sink, CHUNK)
