"""The store served to host workers (issue 19): a host's worker, with a store of its own,
fetches what it lacks of the snapshot it deploys (releases/remote_store.py) from

  GET /store/manifests/{id}    a snapshot's root as stored: its bytes hash to the id
  GET /store/buckets/{id}      a bucket of a manifest's entries as stored: they hash to the id
  GET /store/blobs/{sha256}    a file's bytes, streamed from the opened blob
  POST /store/blobs            many blobs in one answer (`{"blobs": [sha256, ...]}`, at most
                               MAX_BATCH): each as a line `<sha256> <size>` and its bytes, in
                               the order asked; a first rollout of 20,000 small files then
                               costs tens of requests per host, not 20,000

Only to `Authorization: Bearer <api.worker_token>` (access.is_worker), and only what a kept
snapshot holds (kept_snapshots.py, releases/kept_content.py): anything else (unknown, no
longer kept, collected) is one and the same 404; an id that is not a sha256 is a 400 before
any path is made of it. Lookups and opens run in a few threads of their own (threads.py), so
hosts fetching thousands of blobs at once leave the API's other threads free.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from orchestrator.api.access import is_worker
from orchestrator.api.errors import Error
from orchestrator.api.kept_snapshots import KeptSnapshots
from orchestrator.api.threads import in_own_threads
from orchestrator.core.errors import NotFound
from orchestrator.releases.integrity import is_sha256
from orchestrator.releases.kept_content import KeptContent
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.services import Services

THREADS = 4
MAX_BATCH = 1000
BATCH_TYPE = "application/x-sluice-blobs"
Held = Callable[[KeptContent, str], bool]
CHUNK = 256 * 1024

router = APIRouter(prefix="/store", tags=["store"], dependencies=[Depends(is_worker)], responses={
    400: {"model": Error, "description": "the id is not a sha256 in lower-case hex"},
    401: {"model": Error, "description": "worker token missing or wrong (api.token is not one)"},
    403: {"model": Error, "description": "no api.worker_token configured"},
    404: {"model": Error, "description": "not held by any snapshot the store keeps"}})


@dataclass
class Served:
    """What the routes answered since the API started, counted as each answer begins (the
    tests count transfers by it)."""
    manifests: int = 0
    buckets: int = 0
    blobs: int = 0
    bytes: int = 0          # the blobs'
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, kind: str, size: int = 0) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)
            self.bytes += size


class ServedStore:
    """The store's kept content, looked up under one lock, and what was handed out."""

    def __init__(self, services: Services):
        self.store = SnapshotStore(services.config.data_dir / "store")
        self.served = Served()
        self._kept = KeptSnapshots(services.store.apps, services.projections.apps,
                                   services.store.feed_moves)
        self._content = KeptContent(self.store)
        self._lock = threading.Lock()

    def root(self, snapshot_id: str) -> bytes:
        return self._document("manifest", snapshot_id, self.store.manifests / f"{snapshot_id}.json",
                              KeptContent.holds_snapshot)

    def bucket(self, bucket_id: str) -> bytes:
        return self._document("bucket", bucket_id, self.store.buckets / f"{bucket_id}.json",
                              KeptContent.holds_bucket)

    def open_blob(self, sha256: str) -> tuple[IO[bytes], int]:
        """The blob opened (a collection after this cannot take it from under the answer)."""
        self.check_blobs([sha256])
        return self.open_held_blob(sha256)

    def open_held_blob(self, sha256: str) -> tuple[IO[bytes], int]:
        """A blob check_blobs said a kept snapshot holds, opened."""
        try:
            blob = os.fdopen(os.open(self.store.blob_path(sha256), os.O_RDONLY | os.O_NOFOLLOW), "rb")
        except FileNotFoundError:
            raise _missing("blob", sha256) from None
        return blob, os.fstat(blob.fileno()).st_size

    def check_blobs(self, ids: list[str]) -> None:
        self._check("blob", ids, KeptContent.holds_blob)

    def _document(self, kind: str, content_id: str, path: os.PathLike[str], held: Held) -> bytes:
        self._check(kind, [content_id], held)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise _missing(kind, content_id) from None

    def _check(self, kind: str, content_ids: list[str], held: Held) -> None:
        with self._lock:
            self._content.update(self._kept.now())
            lacking = next((i for i in content_ids if not held(self._content, i)), None)
        if lacking is not None:
            raise _missing(kind, lacking)


@router.get("/manifests/{snapshot_id}", response_class=Response,
            responses={200: {"content": {"application/json": {}},
                             "description": "the snapshot's root, its bytes as stored"}})
async def manifest(snapshot_id: str, request: Request) -> Response:
    return await _document(request, "manifests", snapshot_id)


@router.get("/buckets/{bucket_id}", response_class=Response,
            responses={200: {"content": {"application/json": {}},
                             "description": "a bucket of a kept manifest's entries, its bytes as stored"}})
async def bucket(bucket_id: str, request: Request) -> Response:
    return await _document(request, "buckets", bucket_id)


async def _document(request: Request, kind: str, content_id: str) -> Response:
    _valid(content_id)
    served = _served_store(request)
    read = served.root if kind == "manifests" else served.bucket
    body = await in_own_threads(request.app, "store", THREADS, read, content_id)
    served.served.count(kind)
    return Response(body, media_type="application/json")


@router.get("/blobs/{sha256}", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the blob's bytes, which hash to its name"}})
async def blob(sha256: str, request: Request) -> Response:
    _valid(sha256)
    served = _served_store(request)
    opened, size = await in_own_threads(request.app, "store", THREADS, served.open_blob, sha256)
    served.served.count("blobs", size)
    return StreamingResponse(_chunks(opened), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})


class BlobList(BaseModel):
    blobs: list[str] = Field(max_length=MAX_BATCH, description="sha256 ids of kept blobs")


@router.post("/blobs", response_class=StreamingResponse,
             responses={200: {"content": {BATCH_TYPE: {}}, "description":
                              "each blob asked for, in order: a line `<sha256> <size>`, then its bytes"}})
async def blobs(wanted: BlobList, request: Request) -> Response:
    for sha256 in wanted.blobs:
        _valid(sha256)
    served = _served_store(request)
    await in_own_threads(request.app, "store", THREADS, served.check_blobs, wanted.blobs)
    return StreamingResponse(_frames(served, wanted.blobs), media_type=BATCH_TYPE)


def _frames(served: ServedStore, ids: list[str]) -> Iterator[bytes]:
    """Each blob opened as its turn comes (not a thousand descriptors at once); one
    collected since the check ends the answer there, which the host's worker sees cut short
    and asks again."""
    for sha256 in ids:
        try:
            opened, size = served.open_held_blob(sha256)
        except NotFound:
            return
        served.served.count("blobs", size)
        yield f"{sha256} {size}\n".encode()
        yield from _chunks(opened)


def _chunks(blob: IO[bytes]) -> Iterator[bytes]:
    with blob:
        while chunk := blob.read(CHUNK):
            yield chunk


def _valid(content_id: str) -> None:
    if not is_sha256(content_id):
        raise HTTPException(400, "not a content id: ids are sha256 digests in lower-case hex (64 digits)")


def _missing(kind: str, content_id: str) -> NotFound:
    return NotFound(f"no {kind} {content_id} is served here")


def _served_store(request: Request) -> ServedStore:
    state = request.app.state
    if getattr(state, "served_store", None) is None:
        state.served_store = ServedStore(state.services)
    return state.served_store
