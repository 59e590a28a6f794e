"""Content-addressed snapshot store under `{data_dir}/store`.

  blobs/ab/<sha256>        file contents, stored once, read-only (0444)
  manifests/<id>.json      a snapshot's root: the ids of its buckets (releases/manifests.py);
                           <id> is the sha256 of those bytes (older ones: the whole manifest)
  manifests/buckets/<id>.json  one bucket of some manifests' entries, under its sha256
  aliases.sqlite           source hash -> sha256 (git blob ids, Dropbox content_hash, ...),
                           so adapters skip downloading or reading what is already here

A writer may start from a base snapshot (the live one): a source that can tell what changed
since the base's revision then touches only those files, so a one-file change costs one
file's work.
"""
from __future__ import annotations

import errno
import hashlib
import itertools
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from orchestrator.core.errors import InvalidAppLayout
from orchestrator.releases.ignore import IgnoreRules
from orchestrator.releases.manifests import Buckets, FileEntry, Manifest, parse_entries, root_document
from orchestrator.releases.tree_checks import check_changes, check_tree, safe_path

CHUNK = 1 << 20
RECENT_MANIFESTS = 16
CACHED_BUCKETS = 8192       # parsed buckets kept in memory: a manifest sharing them loads fast
FUNCIGNORE = ".funcignore"
MAX_WHO, MAX_MESSAGE = 200, 2000        # characters of a commit's author and message kept


@dataclass(frozen=True)
class Base:
    """What a writer starts from: a snapshot and the source revision it was built from."""
    revision: str
    manifest: Manifest


@dataclass(frozen=True)
class Commit:
    """The source revision's commit: who made it and why (bounded: MAX_WHO, MAX_MESSAGE)."""
    author: str
    author_email: str
    message: str


@dataclass(frozen=True)
class Snapshot:
    id: str
    manifest: Manifest
    blobs_added: int
    blobs_reused: int
    incremental: bool = False
    fresh: frozenset[str] = frozenset()     # blobs this build wrote, hashed as they were written
    commit: Commit | None = None            # the source revision's commit, when it has one

    @property
    def files(self) -> int:
        return len(self.manifest.files)

    @property
    def bytes(self) -> int:
        return self.manifest.size()


class SnapshotStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs, self.manifests, self.tmp = (self.root / n for n in ("blobs", "manifests", "tmp"))
        for d in (self.blobs, self.manifests, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._blob_prefix = str(self.blobs) + "/"
        self._tmp_names = (f"{self.tmp}/{os.getpid()}-{threading.get_ident()}-{n}"
                           for n in itertools.count())
        self._db = sqlite3.connect(self.root / "aliases.sqlite", timeout=30,
                                   isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS alias (kind TEXT, key TEXT, sha256 TEXT,"
                         " size INTEGER, PRIMARY KEY (kind, key)) WITHOUT ROWID")
        self._db.execute("CREATE INDEX IF NOT EXISTS alias_by_blob ON alias (sha256)")
        self._recent: OrderedDict[str, Manifest] = OrderedDict()
        self.buckets = self.manifests / "buckets"
        self.buckets.mkdir(exist_ok=True)
        self._parsed: OrderedDict[str, tuple[dict[str, FileEntry], dict[str, str], frozenset[str]]] = OrderedDict()

    def blob_path(self, sha256: str) -> str:
        return f"{self._blob_prefix}{sha256[:2]}/{sha256}"

    def read_blob(self, sha256: str) -> bytes:
        with open(self.blob_path(sha256), "rb") as f:
            return f.read()

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
        if not pairs:
            return
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO alias VALUES (?, ?, ?, ?)",
                             [(kind, k, e.sha256, e.size) for k, e in pairs])
        self._db.execute("COMMIT")

    def forget(self, sha256s: list[str]) -> None:
        """Drop every alias pointing at these blobs (before they are deleted)."""
        self._db.execute("BEGIN")
        self._db.executemany("DELETE FROM alias WHERE sha256 = ?", [(s,) for s in sha256s])
        self._db.execute("COMMIT")

    def put_stream(self, stream: IO[bytes], written: set[str] | None = None) -> FileEntry:
        """Store a blob from a stream; returns its sha256 and size. Content already stored
        is not written again; what is written is added to `written`."""
        first = stream.read(CHUNK)
        if len(first) < CHUNK:
            sha = hashlib.sha256(first).hexdigest()
            if not os.path.exists(self.blob_path(sha)):
                self._install(sha, [first])
                if written is not None:
                    written.add(sha)
            return FileEntry(sha, len(first))
        entry = self._put_large(first, stream)
        if written is not None:
            written.add(entry.sha256)
        return entry

    def _put_large(self, first: bytes, stream: IO[bytes]) -> FileEntry:
        digest, size, tmp = hashlib.sha256(), 0, next(self._tmp_names)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            with os.fdopen(fd, "wb") as out:
                chunk = first
                while chunk:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    chunk = stream.read(CHUNK)
            self.install_blob(tmp, digest.hexdigest())
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return FileEntry(digest.hexdigest(), size)

    def _install(self, sha256: str, chunks: list[bytes]) -> None:
        tmp = next(self._tmp_names)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        self.install_blob(tmp, sha256)

    def install_blob(self, tmp: str, sha256: str) -> None:
        """A whole blob written at `tmp` (in `self.tmp`, 0444) renamed to its name."""
        final = self.blob_path(sha256)
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tmp, final)

    def save_manifest(self, manifest: Manifest, durable: bool = True) -> str:
        """Store the manifest's buckets not stored yet and its root; returns the snapshot id.
        A manifest derived from a stored one writes only the buckets its change touched.
        `durable` False: not fsynced, for a manifest that can be made again (a build's)."""
        buckets = manifest.buckets()
        ids = list(buckets.ids)
        for b, known in enumerate(ids):
            if known is None:
                data = manifest.bucket_bytes(b)
                ids[b] = hashlib.sha256(data).hexdigest()
                self.write_once(self.buckets / f"{ids[b]}.json", data, durable)
        manifest.with_buckets(Buckets(buckets.members, tuple(ids)))
        root = root_document(i or "" for i in ids)
        snapshot_id = hashlib.sha256(root).hexdigest()
        self.write_once(self.manifests / f"{snapshot_id}.json", root, durable)
        self._keep(snapshot_id, manifest)
        return snapshot_id

    def write_once(self, final: Path, data: bytes, durable: bool = True) -> None:
        """A manifest's root or bucket written whole under its final name (nothing if there
        whole: one cut short by a crash before it reached the disk is written again)."""
        if _holds(final, data):
            return
        tmp = next(self._tmp_names)
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, final)

    def manifest(self, snapshot_id: str) -> Manifest:
        """A snapshot's manifest; recent ones come from memory (they are immutable, but
        another process may have collected them: FileNotFoundError then)."""
        path = self.manifests / f"{snapshot_id}.json"
        if snapshot_id not in self._recent or not path.exists():
            self._recent.pop(snapshot_id, None)
            try:
                self._keep(snapshot_id, self._load(path))
            except (ValueError, KeyError, TypeError) as exc:     # as if not there: it is made again
                raise FileNotFoundError(errno.ENOENT, f"manifest cut short by a crash ({exc})",
                                        str(path)) from exc
        self._recent.move_to_end(snapshot_id)
        return self._recent[snapshot_id]

    def bucket_ids(self, snapshot_id: str) -> list[str]:
        """The buckets a stored snapshot's root names (none for a whole-document one)."""
        doc = orjson.loads((self.manifests / f"{snapshot_id}.json").read_bytes())
        return list(doc.get("buckets", []))

    def _load(self, path: Path) -> Manifest:
        doc = orjson.loads(path.read_bytes())
        if doc.get("version") == 1:
            return Manifest(*parse_entries(doc))
        files: dict[str, FileEntry] = {}
        links: dict[str, str] = {}
        members = []
        for bucket_id in doc["buckets"]:
            bucket_files, bucket_links, paths = self.bucket(bucket_id)
            files.update(bucket_files)
            links.update(bucket_links)
            members.append(paths)
        return Manifest(files, links, Buckets(tuple(members), tuple(doc["buckets"])))

    def bucket(self, bucket_id: str) -> tuple[dict[str, FileEntry], dict[str, str], frozenset[str]]:
        parsed = self._parsed.get(bucket_id)
        if parsed is None:
            files, links = parse_entries(orjson.loads((self.buckets / f"{bucket_id}.json").read_bytes()))
            parsed = self._parsed[bucket_id] = files, links, frozenset((*files, *links))
            while len(self._parsed) > CACHED_BUCKETS:
                self._parsed.popitem(last=False)
        self._parsed.move_to_end(bucket_id)
        return parsed

    def _keep(self, snapshot_id: str, manifest: Manifest) -> None:
        self._recent[snapshot_id] = manifest
        while len(self._recent) > RECENT_MANIFESTS:
            self._recent.popitem(last=False)

    def builder(self, base: Base | None = None) -> SnapshotBuilder:
        return SnapshotBuilder(self, base)


def _holds(path: Path, data: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except FileNotFoundError:
        return False


class SnapshotBuilder:
    """Collects one revision's files from a source adapter, then seals them as a snapshot.
    (What adapters may call of it is their SnapshotWriter protocol, in sources/base.py.)"""

    def __init__(self, store: SnapshotStore, base: Base | None = None):
        self.store = store
        self.base = base
        # copy(), not dict(): a dict a change deleted from (every derived manifest's) is
        # copied whole by copy() but entry by entry by dict(), 4x slower (4 ms at 50k files)
        self._files = base.manifest.files.copy() if base else {}
        self._links = base.manifest.links.copy() if base else {}
        self._touched: set[str] = set()
        self._added: set[str] = set()
        self._aliases: dict[str, list[tuple[str, FileEntry]]] = {}
        self._passed: dict[FileEntry | None, set[str]] = {}    # by the .funcignore judged under
        self._written: set[str] = set()
        self.added = self.reused = 0
        self.on_progress: Callable[[int, int], None] | None = None
        self.commit: Commit | None = None

    @property
    def base_revision(self) -> str | None:
        return self.base.revision if self.base else None

    def drop_base(self) -> None:
        """Start from nothing: the source will list every file."""
        self.base = None
        self._files, self._links = {}, {}

    def known(self, kind: str, keys: Iterable[str]) -> dict[str, FileEntry]:
        """What the store holds of these source hashes: not a blob gone from it (quarantined
        as corrupt, say), which the source must then supply again."""
        return {k: e for k, e in self.store.lookup(kind, keys).items()
                if os.path.exists(self.store.blob_path(e.sha256))}

    def ignored(self, paths: Iterable[str]) -> set[str]:
        rules = IgnoreRules(self._funcignore())
        passed, left_out = self._passed.setdefault(self._files.get(FUNCIGNORE), set()), set[str]()
        for path in paths:
            (left_out if rules.ignored(path) else passed).add(path)
        return left_out

    def add_known(self, path: str, entry: FileEntry, executable: bool = False) -> None:
        self._put(path, FileEntry(entry.sha256, entry.size, executable))
        self.reused += 1

    def add_stream(self, path: str, stream: IO[bytes], executable: bool = False,
                   alias: tuple[str, str] | None = None) -> FileEntry:
        safe_path(path)
        entry = self.store.put_stream(stream, self._written)
        if alias:
            self._aliases.setdefault(alias[0], []).append((alias[1], entry))
        self._put(path, FileEntry(entry.sha256, entry.size, executable))
        self.added += 1
        return entry

    def add_symlink(self, path: str, target: str) -> None:
        self._listed_once(path)
        self.remove(path)           # the base's entry there, a file or a link
        self._links[path] = target

    def remove(self, path: str) -> None:
        self._touch(path)
        self._files.pop(path, None)
        self._links.pop(path, None)

    def report_progress(self, done: int, total: int) -> None:
        if self.on_progress:
            self.on_progress(done, total)

    def describe_commit(self, author: str, author_email: str, message: str) -> None:
        # bounded: it is recorded in an event, and a commit message can be any size
        self.commit = Commit(author[:MAX_WHO], author_email[:MAX_WHO], message[:MAX_MESSAGE])

    def _put(self, path: str, entry: FileEntry) -> None:
        self._listed_once(path)
        self.remove(path)           # the base's entry there, a file or a link
        self._files[path] = entry

    def _touch(self, path: str) -> None:
        self._touched.add(safe_path(path))

    def _listed_once(self, path: str) -> None:
        """A tree naming one path twice is corrupt (git fsck: duplicateEntries): which entry
        would win is an accident of listing order, so refuse it."""
        if path in self._added:
            raise InvalidAppLayout(f"{path!r} appears twice in the source tree")
        self._added.add(path)

    def seal(self) -> Snapshot:
        """Apply the ignore rules, check the tree is consistent, store the manifest."""
        for kind, pairs in self._aliases.items():
            self.store.remember(kind, pairs)
        files, links = self._files, self._links
        rules = IgnoreRules(self._funcignore())
        # Entries taken from the base passed these same rules already, unless they changed;
        # so did those a source asked ignored() about under the same .funcignore.
        recheck = files.keys() | links.keys() if FUNCIGNORE in self._touched or not self.base \
            else self._touched
        recheck = recheck - self._passed.get(files.get(FUNCIGNORE), set())
        ignored = {p for p in recheck if rules.ignored(p)}
        if ignored:
            files = {p: e for p, e in files.items() if p not in ignored}
            links = {p: t for p, t in links.items() if p not in ignored}
        if self.base is None:
            manifest = Manifest(files, links)
            check_tree(manifest)
        else:       # the base passed these checks: only what changed is looked at again
            changed = self._touched | ignored
            manifest = self.base.manifest.derive(files, links, changed)
            check_changes(self.base.manifest, manifest, changed)
        return Snapshot(self.store.save_manifest(manifest), manifest, self.added, self.reused,
                        incremental=self.base is not None, fresh=frozenset(self._written),
                        commit=self.commit)

    def _funcignore(self) -> str:
        entry = self._files.get(FUNCIGNORE)
        if entry is None:
            return ""
        return self.store.read_blob(entry.sha256).decode(errors="replace")
