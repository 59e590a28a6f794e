"""What Dropbox and OneDrive sources share: a folder's listing kept between syncs, the
revision it amounts to, the checks on the names a cloud hands us, and the snapshot built
from it, downloading only what the store does not already hold.

A listing is the folder's files (relative path -> content hash and the cloud's reference
for downloading it) plus the cloud's cursor for the changes after it. It lives in one JSON
file per source and process role (the poller's, the worker's), replaced atomically.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Protocol

from orchestrator.core.errors import InvalidAppLayout, TransientError
from orchestrator.core.files import write_whole
from orchestrator.sources.base import Change, SnapshotWriter

CONCURRENT_DOWNLOADS = 8
FUNCIGNORE = ".funcignore"          # the ignore rules' own file, at the top of the folder
log = logging.getLogger("sluice.cloud")


@dataclass(frozen=True)
class RemoteFile:
    path: str            # relative to the deployed folder, as the cloud displays it
    hash: str            # the cloud's content hash (its kind is the source's HASH_KIND)
    size: int
    ref: str             # what the cloud downloads it by (a Dropbox id, a OneDrive item id)


@dataclass
class Listing:
    cursor: str | None = None
    files: dict[str, RemoteFile] = field(default_factory=dict)   # key: the cloud's own key
    extra: dict = field(default_factory=dict)                     # per-cloud bookkeeping

    def revision(self) -> str:
        """The state's identity: the same files with the same contents give the same
        revision, whichever cursor or order they were seen in."""
        digest = hashlib.sha256()
        for path, content in sorted((f.path, f.hash) for f in self.files.values()):
            digest.update(f"{path}\0{content}\n".encode())
        return digest.hexdigest()[:40]

    def change(self) -> Change:
        return Change(revision=self.revision(), cursor=self.cursor or "")


class ListingFile:
    """One listing on disk: data_dir/cache/{kind}/{key}.{role}.json."""

    def __init__(self, directory: Path, key: str, role: str):
        self.path = Path(directory) / f"{key}.{role}.json"

    def load(self) -> Listing:
        try:
            raw = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return Listing()
        return Listing(raw["cursor"], {k: RemoteFile(**v) for k, v in raw["files"].items()},
                       raw.get("extra", {}))

    def save(self, listing: Listing) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"cursor": listing.cursor, "extra": listing.extra,
                           "files": {k: asdict(f) for k, f in listing.files.items()}})
        write_whole(self.path, data, 0o600)


class CloudFolderSource:
    """The Source protocol over a listing kept per role: the poller's head checks sync one,
    the worker's fetches another. Subclasses say how to sync a listing with the cloud, how to
    download a file and how to hash one."""
    hash_kind: str

    def __init__(self, config, cache_dir: Path, identity: str):
        self.config, self.where = config, config.describe()
        key = hashlib.sha256(identity.lower().encode()).hexdigest()[:24]
        self.cache_key = key
        self._watched = ListingFile(cache_dir, key, "watch")
        self._fetched = ListingFile(cache_dir, key, "fetch")

    def describe(self) -> str:
        return self.where

    def latest(self, cursor: str | None) -> Change | None:
        """With the cursor the poller last saw, only the changes since (None if there are
        none); without it, or after a reset, the whole folder is listed again."""
        listing = self._watched.load()
        fresh = cursor is None or listing.cursor != cursor
        if fresh:
            listing = Listing()
        if not self.sync(listing) and not fresh:
            return None          # the old cursor stays valid: keep it, so it keeps matching
        self._watched.save(listing)
        return listing.change()

    def fetch(self, revision: str, into: SnapshotWriter) -> None:
        listing = self._fetched.load()
        self.sync(listing)
        self._fetched.save(listing)
        if listing.revision() != revision:
            log.info("%s: the folder moved on from %s to %s; deploying what is there now",
                     self.where, revision[:12], listing.revision()[:12])
        write_snapshot(listing, into, kind=self.hash_kind, where=self.where,
                       download=self.download, hasher=self.hasher)

    def sync(self, listing: Listing) -> bool:
        """Bring `listing` up to date in place; whether anything changed."""
        raise NotImplementedError

    def download(self, file: RemoteFile) -> Iterator[bytes]:
        raise NotImplementedError

    def hasher(self, file: RemoteFile) -> Hasher:
        raise NotImplementedError


def relative_name(path: str, root: str) -> str | None:
    """`path` below the folder `root` (both as the cloud spells them, '/'-separated, compared
    without case as the clouds do); None when it is not below `root`. Not yet checked: a
    head check records names as they are, a deployment refuses the bad ones."""
    root, inner = root.strip("/"), path.lstrip("/")
    if not root:
        return inner
    if not inner.lower().startswith(root.lower() + "/"):
        return None
    return inner[len(root) + 1:]


def check_names(files: dict[str, RemoteFile], where: str) -> None:
    """Names that could leave or corrupt a release fail the deployment, naming the entry."""
    for f in files.values():
        if "\0" in f.path:
            raise InvalidAppLayout(f"{where}: the entry {f.path!r} has a NUL character in its name")
        if any(p in ("", ".", "..") for p in f.path.split("/")):
            raise InvalidAppLayout(f"{where}: the entry {f.path!r} would leave or corrupt the "
                                   "app's folder (an empty, '.' or '..' path component)")
    check_case_collisions(files, where)


def check_case_collisions(files: dict[str, RemoteFile], where: str) -> None:
    """Clouds compare names without case; a release on Linux does not. Two entries that only
    differ by case (or Unicode normalisation) would deploy as two files, or overwrite one
    another on a case-insensitive disk: refuse them, naming both."""
    seen: dict[str, str] = {}
    for path in sorted(f.path for f in files.values()):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            folded = unicodedata.normalize("NFC", prefix).casefold()
            other = seen.setdefault(folded, prefix)
            if other != prefix:
                raise InvalidAppLayout(f"{where}: the entries {other!r} and {prefix!r} differ "
                                       "only by case or Unicode normalisation; a release cannot hold both")


class Download(Protocol):
    def __call__(self, file: RemoteFile) -> Iterator[bytes]: ...


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def result(self) -> str:
        """The hash in the form the listing holds it (RemoteFile.hash)."""


def write_snapshot(listing: Listing, into: SnapshotWriter, *, kind: str, where: str,
                   download: Download, hasher: Callable[[RemoteFile], Hasher]) -> int:
    """Every file of the listing that a release may hold into the snapshot; only files
    whose content hash the store does not know are downloaded, several at once, and each
    must hash to what the cloud said. The .funcignore comes first, so that what the ignore
    rules leave out (local.settings.json, with its connection strings, among them) never
    leaves the cloud. Returns how many files were downloaded."""
    check_names(listing.files, where)
    files = sorted(listing.files.values(), key=lambda f: f.path)
    known = into.known(kind, {f.hash for f in files})
    into.drop_base()                     # the listing names every file
    rules = _add_known([f for f in files if f.path == FUNCIGNORE], known, into)
    for f in rules:
        with _fetch_verified(f, where, download, hasher(f)) as spool:
            into.add_stream(f.path, spool, alias=(kind, f.hash))
    left_out = into.ignored(f.path for f in files)
    missing = _add_known([f for f in files if f.path != FUNCIGNORE and f.path not in left_out],
                         known, into)
    _download(missing, into, kind=kind, where=where, download=download, hasher=hasher)
    return len(rules) + len(missing)


def _add_known(files: list[RemoteFile], known: Mapping[str, object], into: SnapshotWriter) -> list[RemoteFile]:
    """Adds the files whose contents the store holds; returns the others."""
    missing = []
    for f in files:
        if f.hash in known:
            into.add_known(f.path, known[f.hash])
        else:
            missing.append(f)
    return missing


def _download(missing: list[RemoteFile], into: SnapshotWriter, *, kind: str, where: str,
              download: Download, hasher: Callable[[RemoteFile], Hasher]) -> None:
    into.report_progress(0, len(missing))
    # Downloads wait on the network, so several run at once; the store is written from
    # this thread only, one verified file at a time.
    with ThreadPoolExecutor(CONCURRENT_DOWNLOADS, thread_name_prefix="download") as pool:
        pending = [pool.submit(_fetch_verified, f, where, download, hasher(f)) for f in missing]
        try:
            for done, (f, future) in enumerate(zip(missing, pending), 1):
                with future.result() as spool:
                    into.add_stream(f.path, spool, alias=(kind, f.hash))
                into.report_progress(done, len(missing))
        finally:
            for future in pending:
                future.cancel()


def _fetch_verified(f: RemoteFile, where: str, download: Download, hasher: Hasher) -> IO[bytes]:
    """The file's bytes (spooled to disk past 8 MiB), checked against its content hash."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    try:
        for chunk in download(f):
            hasher.update(chunk)
            spool.write(chunk)
        if (got := hasher.result()) != f.hash:
            raise TransientError(f"{where}: {f.path!r} arrived with content hash {got}, "
                                 f"the cloud said {f.hash}; it changed or was damaged in transit")
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool
