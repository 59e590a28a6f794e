"""Content-addressed snapshot store under `{data_dir}/store`.

  blobs/ab/<sha256>        file contents, stored once, read-only (0444)
  manifests/<id>.json      canonical JSON of a snapshot; <id> is the sha256 of those bytes
  aliases.sqlite           source hash -> sha256 (git blob ids, Dropbox content_hash, ...),
                           so adapters skip downloading or reading what is already here
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from orchestrator.errors import InvalidAppLayout
from .ignore import IgnoreRules

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int
    executable: bool = False


@dataclass(frozen=True)
class Manifest:
    files: dict[str, FileEntry]
    links: dict[str, str]

    def canonical(self) -> bytes:
        doc = {"version": 1,
               "files": {p: [e.sha256, e.size, int(e.executable)] for p, e in self.files.items()},
               "links": self.links}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def parse(data: bytes) -> "Manifest":
        doc = json.loads(data)
        files = {p: FileEntry(s, n, bool(x)) for p, (s, n, x) in doc["files"].items()}
        return Manifest(files, doc["links"])


@dataclass(frozen=True)
class Snapshot:
    id: str
    manifest: Manifest
    blobs_added: int
    blobs_reused: int

    @property
    def files(self) -> int:
        return len(self.manifest.files)

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.manifest.files.values())


def safe_path(path: str) -> str:
    """A release-relative path, or InvalidAppLayout if it could escape or corrupt the tree."""
    if "\0" in path or path.startswith("/") or "\\" in path:
        raise InvalidAppLayout(f"unsafe file name in source: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidAppLayout(f"unsafe file name in source: {path!r}")
    return path


class SnapshotStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.manifests = self.root / "manifests"
        self.tmp = self.root / "tmp"
        for d in (self.blobs, self.manifests, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "aliases.sqlite", timeout=30,
                                   isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS alias (kind TEXT, key TEXT, sha256 TEXT,"
                         " size INTEGER, PRIMARY KEY (kind, key)) WITHOUT ROWID")

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).exists()

    def lookup(self, kind: str, keys: Iterable[str]) -> dict[str, FileEntry]:
        """Which source hashes map to blobs already stored."""
        wanted, found = list(keys), {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows = self._db.execute(
                f"SELECT key, sha256, size FROM alias WHERE kind = ? AND key IN "
                f"({','.join('?' * len(chunk))})", [kind, *chunk])
            found.update({k: FileEntry(s, n) for k, s, n in rows})
        return found

    def remember(self, kind: str, pairs: list[tuple[str, FileEntry]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO alias VALUES (?, ?, ?, ?)",
                             [(kind, k, e.sha256, e.size) for k, e in pairs])

    def put_stream(self, stream: BinaryIO) -> FileEntry:
        """Store a blob from a stream; returns its sha256 and size."""
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            self._install_blob(tmp, digest.hexdigest())
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return FileEntry(digest.hexdigest(), size)

    def _install_blob(self, tmp: str, sha256: str) -> None:
        final = self.blob_path(sha256)
        if final.exists():
            return
        final.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)

    def save_manifest(self, manifest: Manifest) -> str:
        data = manifest.canonical()
        snapshot_id = hashlib.sha256(data).hexdigest()
        final = self.manifests / f"{snapshot_id}.json"
        if not final.exists():
            fd, tmp = tempfile.mkstemp(dir=self.tmp)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        return snapshot_id

    def manifest(self, snapshot_id: str) -> Manifest:
        return Manifest.parse((self.manifests / f"{snapshot_id}.json").read_bytes())

    def writer(self) -> "SnapshotWriter":
        return SnapshotWriter(self)


class SnapshotWriter:
    """Collects one revision's files from a source adapter, then seals them as a snapshot."""

    def __init__(self, store: SnapshotStore):
        self.store = store
        self._files: dict[str, FileEntry] = {}
        self._links: dict[str, str] = {}
        self.added = 0
        self.reused = 0

    def known(self, kind: str, keys: Iterable[str]) -> dict[str, FileEntry]:
        return self.store.lookup(kind, keys)

    def add_known(self, path: str, entry: FileEntry, executable: bool = False) -> None:
        self._files[safe_path(path)] = FileEntry(entry.sha256, entry.size, executable)
        self.reused += 1

    def add_stream(self, path: str, stream: BinaryIO, executable: bool = False,
                   alias: tuple[str, str] | None = None) -> FileEntry:
        path = safe_path(path)
        entry = self.store.put_stream(stream)
        if alias:
            self.store.remember(alias[0], [(alias[1], entry)])
        self._files[path] = FileEntry(entry.sha256, entry.size, executable)
        self.added += 1
        return entry

    def add_symlink(self, path: str, target: str) -> None:
        self._links[safe_path(path)] = target

    def seal(self) -> Snapshot:
        """Apply the ignore rules, check the tree is consistent, store the manifest."""
        rules = IgnoreRules(self._funcignore())
        files = {p: e for p, e in sorted(self._files.items()) if not rules.ignored(p)}
        links = {p: t for p, t in sorted(self._links.items()) if not rules.ignored(p)}
        _check_tree(files.keys() | links.keys(), links)
        manifest = Manifest(files, links)
        return Snapshot(self.store.save_manifest(manifest), manifest, self.added, self.reused)

    def _funcignore(self) -> str:
        entry = self._files.get(".funcignore")
        if entry is None:
            return ""
        return self.store.blob_path(entry.sha256).read_text(errors="replace")


def _check_tree(paths: set[str], links: dict[str, str]) -> None:
    """No entry may sit inside a file or link, and no link may point outside the tree."""
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in paths:
                raise InvalidAppLayout(f"{path!r} collides with the file {parent!r}")
            parent = parent.rpartition("/")[0]
    for path, target in links.items():
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise InvalidAppLayout(f"symlink {path!r} points outside the app: {target!r}")
