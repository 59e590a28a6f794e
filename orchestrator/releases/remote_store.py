"""A host's worker filling its own store from the API's (issue 19): a snapshot's manifest and
only the blobs the local store lacks, each hashed before it is used.

`fetch_snapshot(store, remote, snapshot_id)` fetches the snapshot's root
(`GET /store/manifests/{id}`), the buckets of its entries the local store lacks
(`GET /store/buckets/{id}`) and the blobs it lacks, in batches (`POST /store/blobs`; one alone
by `GET /store/blobs/{sha256}`), several requests at once. Everything is named by its sha256
and refused unless it hashes to that name (`ContentMismatch`, naming both hashes): a blob
streams into a scratch file in the store's tmp, hashed as it comes, and is renamed to its
name only once it matched, so the store never holds a blob that is not what its name says,
nor a half-written one. The root is written last: a root in the local store means the whole
snapshot is there. Afterwards the local store holds the snapshot as the server's does and
materialise works on it unchanged (`Fetched.fresh`: the blobs hashed here, which it need not
hash again).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

import orjson
import requests
from requests.adapters import HTTPAdapter

from orchestrator.core.errors import AuthenticationFailed, PermanentError, TransientError
from orchestrator.core.urls import sanitize_url
from orchestrator.releases.integrity import is_sha256
from orchestrator.releases.manifests import FileEntry, parse_entries
from orchestrator.releases.snapshots import CHUNK, SnapshotStore

CONCURRENCY = 8                 # requests in flight at once
TIMEOUT = (10.0, 60.0)          # seconds to connect, and between two reads of an answer
MAX_DOCUMENT = 64 * 1024 ** 2   # a root or a bucket is far smaller; more is not one
BATCH_BLOBS, BATCH_BYTES = 500, 8 * 1024 ** 2       # blobs asked for in one POST /store/blobs

T = TypeVar("T")
R = TypeVar("R")


class ContentMismatch(TransientError):
    """What the API sent does not hash to the id asked for: refused, nothing of it kept."""


class NotServed(PermanentError):
    """The API serves no such snapshot or blob: not held by a snapshot it keeps (any more)."""


@dataclass(frozen=True)
class Fetched:
    blobs: int                  # blobs fetched
    bytes: int                  # their bytes
    present: int                # blobs the local store held already
    documents: int              # the root and the buckets fetched
    document_bytes: int
    fresh: frozenset[str]       # the blobs fetched, hashed as they were written


class RemoteStore:
    """The API's store as a host's worker reaches it: `base_url` (e.g. http://sluice:8080) with
    `api.worker_token`, through one pooled session."""

    def __init__(self, base_url: str, token: str, session: requests.Session | None = None,
                 connections: int = CONCURRENCY):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.mount(self.base_url, HTTPAdapter(pool_maxsize=connections))
        self._headers = {"Authorization": f"Bearer {token}"}

    def document(self, kind: Literal["manifests", "buckets"], content_id: str) -> bytes:
        """A snapshot's root or a bucket, as the API's store holds it (not yet checked)."""
        body = bytearray()
        with self._get(f"{kind}/{content_id}", f"{kind[:-1]} {content_id}") as answer:
            for chunk in answer.iter_content(CHUNK):
                body += chunk
                if len(body) > MAX_DOCUMENT:
                    raise ContentMismatch(f"{kind[:-1]} {content_id}: the API sent over {MAX_DOCUMENT} bytes")
        return bytes(body)

    @contextmanager
    def blob(self, sha256: str) -> Iterator[Iterator[bytes]]:
        """The blob's bytes as they arrive (not yet checked)."""
        with self._get(f"blobs/{sha256}", f"blob {sha256}") as answer:
            yield answer.iter_content(CHUNK)

    @contextmanager
    def blobs(self, ids: list[str]) -> Iterator[Iterator[bytes]]:
        """Many blobs in one answer: for each, a line `<sha256> <size>` and its bytes."""
        what = f"{len(ids)} blobs ({ids[0]}, ...)"
        with self._get("blobs", what, json={"blobs": ids}) as answer:
            yield answer.iter_content(CHUNK)

    @contextmanager
    def _get(self, path: str, what: str, json: object = None) -> Iterator[requests.Response]:
        where = sanitize_url(self.base_url)
        try:
            with self.session.request("GET" if json is None else "POST", f"{self.base_url}/store/{path}",
                                      headers=self._headers, json=json, stream=True,
                                      timeout=TIMEOUT) as answer:
                _accepted(answer, where, what)
                yield answer
        except requests.RequestException as exc:
            raise TransientError(f"fetching {what} from {where}: {exc}") from exc


def _accepted(answer: requests.Response, where: str, what: str) -> None:
    if answer.status_code == 200:
        return
    said = _error_of(answer)
    if answer.status_code in (401, 403):
        raise AuthenticationFailed(f"the API at {where} refused this host's worker token "
                                   f"(api.worker_token): {answer.status_code} {said}")
    if answer.status_code == 404:
        raise NotServed(f"the API at {where} does not serve {what}: no snapshot it keeps holds it")
    raise TransientError(f"the API at {where} answered {answer.status_code} for {what}: {said}")


def _error_of(answer: requests.Response) -> str:
    try:
        return str(orjson.loads(answer.raw.read(4096))["error"])
    except (ValueError, KeyError, TypeError, OSError, requests.RequestException):
        return answer.reason or ""


def fetch_snapshot(store: SnapshotStore, remote: RemoteStore, snapshot_id: str,
                   concurrency: int = CONCURRENCY) -> Fetched:
    """Make the local `store` hold snapshot `snapshot_id` as the API's does, fetching only
    what it lacks."""
    if not is_sha256(snapshot_id):
        raise ValueError(f"{snapshot_id!r} is not a snapshot id")
    root = _checked("manifest", snapshot_id, remote.document("manifests", snapshot_id))
    documents, files = _entries(store, remote, root, concurrency)
    wanted = {e.sha256: e.size for e in files.values()}
    if not all(map(is_sha256, wanted)):
        raise ContentMismatch(f"manifest {snapshot_id} names a blob that is not a sha256")
    missing = [(sha, size) for sha, size in wanted.items() if not os.path.exists(store.blob_path(sha))]
    at_once(_batches(missing), lambda batch: _fetch_batch(store, remote, batch), concurrency)
    store.write_once(store.manifests / f"{snapshot_id}.json", root)
    return Fetched(blobs=len(missing), bytes=sum(size for _, size in missing),
                   present=len(wanted) - len(missing), documents=1 + len(documents),
                   document_bytes=len(root) + sum(map(len, documents)),
                   fresh=frozenset(sha for sha, _ in missing))


def _entries(store: SnapshotStore, remote: RemoteStore, root: bytes,
             concurrency: int) -> tuple[list[bytes], dict[str, FileEntry]]:
    """The buckets fetched (those the local store lacked, now written) and every file entry
    of the manifest whose root is `root`."""
    doc = orjson.loads(root)
    if doc.get("version") == 1:         # a whole document, stored before buckets existed
        return [], parse_entries(doc)[0]
    ids = doc["buckets"]
    if not all(isinstance(b, str) and is_sha256(b) for b in ids):
        raise ContentMismatch(f"manifest {hashlib.sha256(root).hexdigest()} names a bucket that is not a sha256")
    lacking = [b for b in dict.fromkeys(ids) if not (store.buckets / f"{b}.json").exists()]

    def fetch(bucket_id: str) -> bytes:
        data = _checked("bucket", bucket_id, remote.document("buckets", bucket_id))
        store.write_once(store.buckets / f"{bucket_id}.json", data)
        return data
    fetched = at_once(lacking, fetch, concurrency)
    files: dict[str, FileEntry] = {}
    for bucket_id in ids:
        files.update(parse_entries(orjson.loads((store.buckets / f"{bucket_id}.json").read_bytes()))[0])
    return fetched, files


def _checked(kind: str, content_id: str, data: bytes) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != content_id:
        raise ContentMismatch(_mismatch(kind, content_id, actual))
    return data


def _batches(blobs: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """The blobs in batches of at most BATCH_BLOBS and about BATCH_BYTES, a big one alone
    (asked for by its own GET)."""
    batches: list[list[tuple[str, int]]] = []
    batch: list[tuple[str, int]] = []
    held = 0
    for sha256, size in blobs:
        if batch and (len(batch) >= BATCH_BLOBS or held + size > BATCH_BYTES):
            batches.append(batch)
            batch, held = [], 0
        batch.append((sha256, size))
        held += size
    return batches + ([batch] if batch else [])


def _fetch_batch(store: SnapshotStore, remote: RemoteStore, batch: list[tuple[str, int]]) -> None:
    if len(batch) == 1:
        with remote.blob(batch[0][0]) as chunks:
            _receive(store, *batch[0], chunks)
        return
    with remote.blobs([sha256 for sha256, _ in batch]) as answer:
        frames = Frames(answer)
        for sha256, size in batch:
            said, _, sent = frames.line().partition(" ")
            if said != sha256 or not sent.isdigit():
                raise ContentMismatch(f"blob {sha256}: the API's answer does not go on with it "
                                      "where it should: cut short or out of order")
            _receive(store, sha256, size, frames.take(int(sent), sha256))


class Frames:
    """A batch answer read as it arrives: a header line, then exactly that many bytes. What
    is read is taken from the chunk by an offset: hundreds of small blobs in one chunk cost
    one copy of it, not one of the rest of it each."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.buffer, self.at = chunks, b"", 0

    def line(self) -> str:
        while (end := self.buffer.find(b"\n", self.at)) < 0:
            if len(self.buffer) - self.at > 200 or not self._more():
                return ""
        line, self.at = self.buffer[self.at:end], end + 1
        return line.decode(errors="replace")

    def take(self, size: int, what: str) -> Iterator[bytes]:
        while size > 0:
            if self.at >= len(self.buffer) and not self._more():
                raise ContentMismatch(f"blob {what}: the API's answer was cut short {size} bytes before its end")
            piece = self.buffer[self.at:self.at + size]
            self.at += len(piece)
            size -= len(piece)
            yield piece

    def _more(self) -> bool:
        chunk = next(self.chunks, b"")
        self.buffer, self.at = self.buffer[self.at:] + chunk, 0
        return bool(chunk)


def _receive(store: SnapshotStore, sha256: str, size: int, chunks: Iterable[bytes]) -> None:
    """The blob streamed into a scratch file, hashed as it comes, and renamed to its name only
    if it is what the name says; otherwise removed, and ContentMismatch."""
    fd, scratch = tempfile.mkstemp(dir=store.tmp, prefix="fetch-")
    try:
        digest, received = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o444)
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                if received > size:     # the manifest's size: a stream going on is not this blob
                    break
        if digest.hexdigest() != sha256 or received != size:
            raise ContentMismatch(_mismatch("blob", sha256, digest.hexdigest(), received, size))
        store.install_blob(scratch, sha256)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


def _mismatch(kind: str, expected: str, actual: str, received: int = 0, size: int = 0) -> str:
    sent = "" if received == size else \
        f" ({received} bytes{' or more' if received > size else ''}; the manifest says {size})"
    return (f"{kind} {expected}: the bytes the API sent{sent} hash to {actual}, not to {expected}: "
            "refused, nothing of it stored")


def at_once(items: Iterable[T], work: Callable[[T], R], concurrency: int) -> list[R]:
    """`work` on each item, `concurrency` at a time; the first failure cancels what has not
    started and is raised once the rest in flight ended (each cleans up after itself)."""
    items = list(items)
    if len(items) <= 1 or concurrency <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        futures = [pool.submit(work, item) for item in items]
        try:
            return [f.result() for f in as_completed(futures)]
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
