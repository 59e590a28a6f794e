"""A zip's entries as a snapshot: what Kudu's zip deploy hands over, checked whole before any
of it is stored.

The central directory is read first, and every entry that could hurt is refused there,
naming it, before a byte is decompressed: names that climb out (`..`, absolute, drive
letters), the same name twice, names only the case tells apart (the app's files would
collide on a case-insensitive disk, and which one wins is an accident), encrypted entries,
more entries or more bytes unzipped than the limits, a compression ratio no real app has (a
zip bomb). Links are read next (their targets are their contents) and must stay inside the
tree; then files are streamed into the content store, where a blob already there costs its
hash only. Reading never trusts the declared sizes alone: an entry that inflates past what
its header said is refused too.
"""
from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from orchestrator.core.errors import InvalidAppLayout, ZipRefused
from orchestrator.releases.snapshots import Snapshot, SnapshotStore
from orchestrator.releases.tree_checks import safe_path

UNIX = 3                    # ZipInfo.create_system of zips made on Unix: mode bits in external_attr
ENCRYPTED = 0x1             # general purpose flag bit 0
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 200_000
    max_unzipped_bytes: int = 8 * 1024 ** 3
    max_ratio: float = 200.0         # bytes unzipped per byte zipped, over the whole zip
    ratio_floor: int = 64 * 1024 * 1024     # below this many bytes unzipped, any ratio is harmless


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    path: str
    link: bool
    executable: bool


def snapshot_from_zip(store: SnapshotStore, zip_path: Path, limits: ZipLimits) -> Snapshot:
    """The zip's files as a sealed snapshot, or ZipRefused naming the entry at fault."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ZipRefused(f"the body is not a zip file: {exc}") from None
    with archive:
        entries = _checked(archive, zip_path.stat().st_size, limits)
        writer = store.builder()
        try:
            for entry in entries:
                with archive.open(entry.info) as stream:
                    if entry.link:
                        writer.add_symlink(entry.path, _link_target(entry, stream))
                    else:
                        writer.add_stream(entry.path, cast(IO[bytes], _Bounded(stream, entry)),
                                          entry.executable)
            return writer.seal()
        except InvalidAppLayout as exc:     # a link leaving the tree, an entry inside a file
            raise ZipRefused(str(exc)) from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
            raise ZipRefused(f"cannot unzip {entry.info.filename!r}: {exc}") from None


def _checked(archive: zipfile.ZipFile, zipped_bytes: int, limits: ZipLimits) -> list[_Entry]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ZipRefused(f"the zip has {len(infos)} entries; at most {limits.max_entries} "
                         "are taken (api.max_zip_entries)", status=413)
    total = sum(i.file_size for i in infos)
    if total > limits.max_unzipped_bytes:
        raise ZipRefused(f"the zip unzips to {total} bytes; at most {limits.max_unzipped_bytes} "
                         "are taken (api.max_unzipped_bytes)", status=413)
    if total > limits.ratio_floor and total > limits.max_ratio * max(zipped_bytes, 1):
        raise ZipRefused(f"the zip unzips to {total / max(zipped_bytes, 1):.0f} times its size; "
                         f"at most {limits.max_ratio:g} is taken (api.max_zip_ratio)", status=413)
    entries = [e for e in map(_entry, infos) if e is not None]
    _refuse_collisions(entries)
    return entries


def _entry(info: zipfile.ZipInfo) -> _Entry | None:
    name = info.filename
    if info.flag_bits & ENCRYPTED:
        raise ZipRefused(f"{name!r} is encrypted; zip deploy takes no encrypted entries")
    path = _release_path(name)
    mode = info.external_attr >> 16 if info.create_system == UNIX else 0
    if info.is_dir() or stat.S_ISDIR(mode):
        return None
    kind = stat.S_IFMT(mode)
    if kind not in (0, stat.S_IFREG, stat.S_IFLNK):
        raise ZipRefused(f"{name!r} is neither a file, a folder nor a symlink")
    return _Entry(info, path, kind == stat.S_IFLNK, bool(mode & 0o111) and kind != stat.S_IFLNK)


def _release_path(name: str) -> str:
    """The entry's path in the release. Windows tools write `\\` between folders (Kudu on
    Windows reads them as separators, so do we); `./` parts are dropped; anything that
    climbs out, is absolute or names a drive is refused."""
    parts = name.replace("\\", "/").rstrip("/").split("/")
    if name.startswith(("/", "\\")) or (parts and len(parts[0]) == 2 and parts[0][1] == ":"):
        raise ZipRefused(f"{name!r} is an absolute name; zip entries must be relative")
    kept = [p for p in parts if p not in ("", ".")]
    if ".." in kept:
        raise ZipRefused(f"{name!r} climbs out of the app with '..'")
    try:
        return safe_path("/".join(kept)) if kept else ""
    except InvalidAppLayout:
        raise ZipRefused(f"{name!r} is not a name a release can hold") from None


def _refuse_collisions(entries: list[_Entry]) -> None:
    seen: dict[str, str] = {}
    for entry in entries:
        if not entry.path:
            raise ZipRefused(f"{entry.info.filename!r} names no file")
        folded = entry.path.casefold()
        if folded in seen:
            other = seen[folded]
            if other == entry.path:
                raise ZipRefused(f"{entry.path!r} appears twice in the zip")
            raise ZipRefused(f"{entry.path!r} and {other!r} differ only in case; an app's "
                             "files must not (they collide on case-insensitive disks)")
        seen[folded] = entry.path


def _link_target(entry: _Entry, stream: IO[bytes]) -> str:
    raw = stream.read(4097)
    if len(raw) > 4096:
        raise ZipRefused(f"symlink {entry.info.filename!r} has a target over 4096 bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ZipRefused(f"symlink {entry.info.filename!r} has a target that is not UTF-8") from None


class _Bounded:
    """An entry's stream that refuses to give more than its header declared (the total
    was checked against the limits from the headers)."""

    def __init__(self, stream: IO[bytes], entry: _Entry):
        self.stream, self.entry, self.left = stream, entry, entry.info.file_size

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(CHUNK if size is None or size < 0 else size)
        self.left -= len(data)
        if self.left < 0:
            raise ZipRefused(f"{self.entry.info.filename!r} unzips to more than its header "
                             f"declares ({self.entry.info.file_size} bytes)", status=413)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk
