"""A snapshot's manifest: every file (content hash, size, executable bit) and symlink by path,
kept in buckets so that a change costs what it touched to seal, to compare and to load
(issue 16).

Paths fall into 2^k buckets by their crc32 (k from the tree's size: about 256 entries a
bucket, one bucket up to 512 entries). A bucket is canonical JSON stored once under its
sha256; a snapshot's id is the sha256 of its root document, the list of its buckets' ids. So
the same tree has the same id however it was built, and a manifest derived from another (the
snapshot of a change, from the live one) shares the buckets the change did not touch: sealing
it serialises only the touched buckets, and two manifests differ only where their buckets do.

`canonical()` / `parse()` are the whole-document form (version 1), which build layers use and
which manifests stored before buckets existed still have.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

ENTRIES_PER_BUCKET = 256
MAX_BUCKETS = 4096


class FileEntry(NamedTuple):
    sha256: str
    size: int
    executable: bool = False


def bucket_count(entries: int) -> int:
    """How many buckets a tree of this many entries (files and links) is kept in."""
    if entries <= 2 * ENTRIES_PER_BUCKET:
        return 1
    return min(MAX_BUCKETS, 1 << (-(-entries // ENTRIES_PER_BUCKET) - 1).bit_length())


def bucket_of(path: str, count: int) -> int:
    return zlib.crc32(path.encode()) & (count - 1)


@dataclass(frozen=True)
class Buckets:
    """Which paths each bucket holds, and each bucket's id once serialised (None before)."""
    members: tuple[frozenset[str], ...]
    ids: tuple[str | None, ...]

    @property
    def count(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Manifest:
    files: dict[str, FileEntry]
    links: dict[str, str]
    _buckets: Buckets | None = field(default=None, compare=False, repr=False)
    _folders: dict[str, int] | None = field(default=None, compare=False, repr=False)
    _size: int | None = field(default=None, compare=False, repr=False)

    def size(self) -> int:
        """The bytes of every file (summed the first time, unless derived from a manifest
        that knew its own)."""
        if self._size is None:
            object.__setattr__(self, "_size", sum(e.size for e in self.files.values()))
        assert self._size is not None
        return self._size

    def folders(self) -> dict[str, int]:
        """Every folder the tree implies, with how many entries lie beneath it."""
        if self._folders is None:
            counts: dict[str, int] = {}
            for path in (*self.files, *self.links):
                _count_folders(counts, path, 1)
            object.__setattr__(self, "_folders", counts)
        assert self._folders is not None
        return self._folders

    def buckets(self) -> Buckets:
        """The manifest's buckets (worked out from every path the first time, unless it was
        derived from another manifest or loaded from the store)."""
        if self._buckets is None:
            count = bucket_count(len(self.files) + len(self.links))
            members: list[set[str]] = [set() for _ in range(count)]
            for path in (*self.files, *self.links):
                members[bucket_of(path, count)].add(path)
            self.with_buckets(Buckets(tuple(map(frozenset, members)), (None,) * count))
        assert self._buckets is not None
        return self._buckets

    def with_buckets(self, buckets: Buckets) -> None:
        """Record the buckets (their ids, once serialised): a cache, not a change of content."""
        object.__setattr__(self, "_buckets", buckets)

    def derive(self, files: dict[str, FileEntry], links: dict[str, str],
               touched: Iterable[str]) -> Manifest:
        """The manifest of `files` and `links`, which differ from this one's only at the
        `touched` paths: it shares every other bucket with this one."""
        base = self.buckets()
        if bucket_count(len(files) + len(links)) != base.count:
            return Manifest(files, links)
        members, ids = list(base.members), list(base.ids)
        dirty: dict[int, set[str]] = {}
        for path in touched:
            b = bucket_of(path, base.count)
            paths = dirty.setdefault(b, set(members[b]))
            if path in files or path in links:
                paths.add(path)
            else:
                paths.discard(path)
        for b, paths in dirty.items():
            members[b], ids[b] = frozenset(paths), None
        derived = Manifest(files, links, Buckets(tuple(members), tuple(ids)))
        if self._folders is not None:
            counts = dict(self._folders)
            for path in touched:
                was = path in self.files or path in self.links
                now = path in files or path in links
                if was != now:
                    _count_folders(counts, path, 1 if now else -1)
            object.__setattr__(derived, "_folders", counts)
        if self._size is not None:
            object.__setattr__(derived, "_size", self._size + sum(
                (files[p].size if p in files else 0) - (self.files[p].size if p in self.files else 0)
                for p in set(touched)))
        return derived

    def bucket_bytes(self, b: int) -> bytes:
        """Bucket `b`'s canonical JSON."""
        paths = self.buckets().members[b]
        doc = {"files": {p: [e.sha256, e.size, int(e.executable)] for p in paths
                         if (e := self.files.get(p)) is not None},
               "links": {p: self.links[p] for p in paths if p in self.links}}
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    def changed(self, other: Manifest) -> set[str]:
        """The paths whose entry differs between the two manifests (added, removed, changed,
        a file become a link): only the buckets whose ids differ are looked into."""
        mine, theirs = self.buckets(), other.buckets()
        if mine.count != theirs.count:
            candidates: Iterable[str] = {*self.files, *self.links, *other.files, *other.links}
        else:
            candidates = {p for b in range(mine.count)
                          if mine.ids[b] is None or mine.ids[b] != theirs.ids[b]
                          for p in mine.members[b] | theirs.members[b]}
        return {p for p in candidates if self.files.get(p) != other.files.get(p)
                or self.links.get(p) != other.links.get(p)}

    def canonical(self) -> bytes:
        doc = {"version": 1, "links": self.links,
               "files": {p: [e.sha256, e.size, int(e.executable)] for p, e in self.files.items()}}
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    @staticmethod
    def parse(data: bytes) -> Manifest:
        doc = orjson.loads(data)
        return Manifest(*parse_entries(doc))


def _count_folders(counts: dict[str, int], path: str, step: int) -> None:
    folder = path.rpartition("/")[0]
    while folder:
        left = counts.get(folder, 0) + step
        if left:
            counts[folder] = left
        else:
            del counts[folder]
        folder = folder.rpartition("/")[0]


def parse_entries(doc: dict) -> tuple[dict[str, FileEntry], dict[str, str]]:
    """The files and links of a whole document or of one bucket."""
    return {p: FileEntry(s, n, bool(x)) for p, (s, n, x) in doc["files"].items()}, doc["links"]


def root_document(bucket_ids: Iterable[str]) -> bytes:
    return orjson.dumps({"version": 2, "buckets": list(bucket_ids)})
