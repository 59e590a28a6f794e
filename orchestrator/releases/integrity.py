"""Store integrity: content checked against the sha256 that names it, and the quarantine.

A release's files are hardlinks of the store's blobs, so a blob changed on disk changes every
release sharing its inode at once. Content is hashed when a blob enters a release that does
not already hold it (materialise), by `sluice verify` and by the scrub (releases/scrub.py).

`{store}/quarantine/{sha256}.{n}` keeps the inodes found not to hold their sha256's content:
a corrupt blob is moved there out of `blobs/` (its aliases forgotten, so the next fetch
downloads the content again rather than trusting it), a corrupt copy in a release is linked
there. A release file that is one of those inodes is damaged (`Quarantine.damaged`): the
app's next deployment rebuilds it from the source instead of carrying it over. An entry that
no release links any more goes at the next garbage collection.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from orchestrator.core.errors import TransientError
from orchestrator.releases.snapshots import CHUNK, Manifest, SnapshotStore

_ENTRIES = itertools.count()
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CorruptBlob(TransientError):
    """A blob's content does not match its sha256: it is quarantined, and the next attempt
    fetches the file from the source again."""


def is_sha256(text: str) -> bool:
    """Whether `text` names content as the store does (a sha256 in lower-case hex), and so
    may become part of a path in it."""
    return _SHA256.fullmatch(text) is not None


def sha256_of(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        digest = hashlib.sha256(chunk := f.read(CHUNK))
        while len(chunk) == CHUNK:     # most files are read whole at once: no loop's cost
            digest.update(chunk := f.read(CHUNK))
        return digest.hexdigest()


def check_blob(store: SnapshotStore, sha256: str, path: str) -> None:
    """CorruptBlob naming `path` (a release file holding this blob) if the blob's content
    is not what its name says; the blob is quarantined first."""
    actual = sha256_of(store.blob_path(sha256))
    if actual != sha256:
        Quarantine(store).add_blob(sha256)
        raise CorruptBlob(f"{path}: the store's copy of its content (blob {sha256}) is corrupt "
                          f"(it hashes to {actual[:12]}); it was quarantined and will be "
                          "fetched from the source again")


class Quarantine:
    def __init__(self, store: SnapshotStore):
        self.store = store
        self.root = store.root / "quarantine"

    def add_blob(self, sha256: str) -> Path | None:
        """Take a corrupt blob out of the store (None if it is gone already)."""
        self.store.forget([sha256])     # so no source takes it as already stored
        dest = self._new_entry(sha256)
        try:
            os.rename(self.store.blob_path(sha256), dest)
        except FileNotFoundError:
            return None
        return dest

    def add_copy(self, sha256: str, path: str | os.PathLike[str]) -> Path:
        """Record a release's own corrupt copy (an executable file is not the blob's inode)."""
        dest = self._new_entry(sha256)
        os.link(path, dest)
        return dest

    def entries(self) -> dict[str, list[Path]]:
        """sha256 -> the quarantined inodes that should have held it."""
        found: dict[str, list[Path]] = {}
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return found
        for name in names:
            found.setdefault(name.partition(".")[0], []).append(self.root / name)
        return found

    def damaged(self, manifest: Manifest, release: str | os.PathLike[str]) -> list[str]:
        """The release's files that are quarantined inodes (or missing where one was)."""
        entries = self.entries()
        if not entries:
            return []
        bad = _inodes(p for paths in entries.values() for p in paths)
        damaged = []
        for path, entry in manifest.files.items():
            if entry.sha256 in entries:
                try:
                    st = os.stat(f"{release}/{path}")
                except FileNotFoundError:
                    damaged.append(path)
                    continue
                if (st.st_dev, st.st_ino) in bad:
                    damaged.append(path)
        return damaged

    def holds(self, path: str | os.PathLike[str]) -> bool:
        """Whether the file is one of the quarantined inodes."""
        bad = _inodes(p for paths in self.entries().values() for p in paths)
        return bool(_inodes([Path(path)]) & bad)

    def lost(self, manifest: Manifest) -> list[str]:
        """The manifest's files whose blob was quarantined and is not back in the store."""
        entries = self.entries()
        return [path for path, e in manifest.files.items()
                if e.sha256 in entries and not os.path.exists(self.store.blob_path(e.sha256))]

    def collect(self) -> int:
        """Drop the entries no release links any more; returns how many."""
        removed = 0
        for paths in self.entries().values():
            for path in paths:
                try:
                    if os.stat(path).st_nlink == 1:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def _new_entry(self, sha256: str) -> Path:
        self.root.mkdir(exist_ok=True)
        return self.root / f"{sha256}.{time.time_ns()}-{os.getpid()}-{next(_ENTRIES)}"


def _inodes(paths: Iterable[Path]) -> set[tuple[int, int]]:
    found = set()
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found
