"""OneDrive folders through Microsoft Graph's `delta`, with tokens from MSAL.

The stored `@odata.deltaLink` is the cursor. Delta reports items by id, without paths, and
reports a moved or renamed folder as that folder alone, so the listing keeps every item's
name and parent and derives paths from them after each round. 410 (resync) starts a fresh
enumeration; 429/503 wait for Retry-After. Content comes from `/content`, which redirects
to a pre-authenticated URL that must not get the Authorization header.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import requests

from orchestrator.config.sources import OneDriveSourceConfig
from orchestrator.core.errors import (
    AuthenticationFailed,
    PermanentError,
    RevisionNotFound,
    SluiceError,
    TransientError,
)
from orchestrator.sources.cloud_folder import CloudFolderSource, Listing, RemoteFile, relative_name
from orchestrator.sources.cloud_hashes import QuickXorHash
from orchestrator.sources.graph_auth import tokens_for

DOWNLOAD_CHUNK = 1024 * 1024
MAX_WAITS = 5                   # 429/503 answers in a row before giving up for this attempt
MAX_RETRY_AFTER = 120.0
log = logging.getLogger("sluice.onedrive")
_sessions: dict[int, requests.Session] = {}


def _session() -> requests.Session:
    """One pooled session per process: the poller makes a source object for every head check,
    and a session of its own would open a new TLS connection to Graph each time. (It trusts
    REQUESTS_CA_BUNDLE when that is set.)"""
    pid = os.getpid()
    if pid not in _sessions:
        _sessions[pid] = requests.Session()
    return _sessions[pid]


class OneDriveSource(CloudFolderSource):
    hash_kind = "onedrive-hash"

    def __init__(self, config: OneDriveSourceConfig, cache_dir: Path, sleep=time.sleep):
        who = f"{config.tenant}\0{config.client_id}\0{config.drive_id}\0{config.path}"
        super().__init__(config, cache_dir, who)
        self._tokens = tokens_for(config, Path(cache_dir) / f"{self.cache_key}.msal.json")
        self._sleep = sleep
        self._http = _session()

    def hasher(self, file: RemoteFile):
        return _Sha256() if file.hash.startswith("sha256:") else _QuickXor()

    # --- delta ---------------------------------------------------------------------------

    def sync(self, listing: Listing) -> bool:
        """Follow delta pages from the cursor (or from the start) to the next deltaLink."""
        url, changed = listing.cursor or self._first_delta(), False
        items = listing.extra.setdefault("items", {})
        while True:
            response = self._get(url)
            if response.status_code == 410:
                log.info("%s: Graph asked for a resync; enumerating the folder again", self.where)
                listing.cursor, listing.files, listing.extra = None, {}, {}
                return self.sync(listing) or True
            page = self._json(response)
            for item in page.get("value", []):
                changed |= self._note(listing.extra, items, item)
            if "@odata.nextLink" in page:
                url = page["@odata.nextLink"]
                continue
            listing.cursor = page["@odata.deltaLink"]
            break
        if changed or not listing.files:
            listing.files = self._files(listing.extra)
        return changed

    def _first_delta(self) -> str:
        c = self.config
        drive = f"{c.graph_url}/drives/{quote(c.drive_id)}" if c.drive_id else f"{c.graph_url}/me/drive"
        if c.drive_id or not c.path:
            return f"{drive}/root/delta"      # business: the whole drive, filtered here
        return f"{drive}/root:/{quote(c.path)}:/delta"

    def _note(self, extra: dict, items: dict, item: dict) -> bool:
        """Record one delta item (the last report of an id wins)."""
        if "deleted" in item:
            return items.pop(item["id"], None) is not None
        if "root" in item or "root" not in extra:
            extra["root"] = item["id"]       # the drive root, or the scoped folder (listed first)
        file = item.get("file")
        items[item["id"]] = {
            "name": item.get("name", ""), "parent": (item.get("parentReference") or {}).get("id"),
            "size": item.get("size", 0),
            "hash": _hash_of(file.get("hashes") or {}) if file is not None else None,
            "file": file is not None}
        return True

    def _files(self, extra: dict) -> dict[str, RemoteFile]:
        """Paths from names and parents; items whose chain does not reach the root (their
        folder was deleted) are gone."""
        items, root = extra.get("items", {}), extra.get("root")
        paths: dict[str | None, str | None] = {root: ""}        # root: None before any item
        scoped_in_drive = self.config.path if self.config.drive_id or not self.config.path else ""
        files = {}
        for item_id, item in items.items():
            if not item["file"]:
                continue
            path = _path(item_id, items, paths)
            if path is None:
                continue
            if not item["hash"]:
                raise PermanentError(f"{self.where}: {path!r} has no content hash in Graph's answer")
            inner = relative_name(path, scoped_in_drive)
            if inner is not None:
                files[item_id] = RemoteFile(inner, item["hash"], item["size"], item_id)
        return files

    # --- HTTP ----------------------------------------------------------------------------

    def _get(self, url: str, **kwargs) -> requests.Response:
        """GET with a bearer token; waits out 429/503 per Retry-After, renews a refused
        token once; 410 is returned to the caller (only delta knows what to do with it)."""
        renewed = False
        for _ in range(MAX_WAITS):
            try:
                response = self._http.get(url, headers={"Authorization": f"Bearer {self._tokens.get()}"},
                                          timeout=60, **kwargs)
            except requests.RequestException as exc:
                raise TransientError(f"{self.where}: Graph unreachable: {type(exc).__name__}") from None
            if response.status_code == 401 and not renewed:
                self._tokens.forget_access_tokens()
                renewed = True
                continue
            if response.status_code in (429, 503):
                self._sleep(_retry_after(response))
                continue
            return response
        raise TransientError(f"{self.where}: Graph kept answering {response.status_code} "
                             f"after {MAX_WAITS} waits")

    def _json(self, response: requests.Response) -> dict:
        if response.status_code == 200:
            return response.json()
        raise self._error(response)

    def _error(self, response: requests.Response, entry: str | None = None) -> SluiceError:
        what = self.where + (f" ({entry!r})" if entry else "")
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        detail = f"HTTP {response.status_code} {error.get('code', '')}".strip()
        if response.status_code in (401, 403):
            return AuthenticationFailed(f"{what}: Graph refused access ({detail})")
        if response.status_code == 404:
            return RevisionNotFound(f"{what}: not found in the drive ({detail})")
        if response.status_code >= 500:
            return TransientError(f"{what}: Graph failed ({detail})")
        return PermanentError(f"{what}: Graph answered {detail}")

    def download(self, file: RemoteFile) -> Iterator[bytes]:
        drive = f"drives/{quote(self.config.drive_id)}" if self.config.drive_id else "me/drive"
        response = self._get(f"{self.config.graph_url}/{drive}/items/{quote(file.ref)}/content",
                             allow_redirects=False)
        if response.status_code not in (301, 302, 303, 307, 308):
            raise self._error(response, file.path)
        # Pre-authenticated: a bearer token must not go there (and is refused).
        try:
            with self._http.get(response.headers["Location"], stream=True, timeout=300) as content:
                if content.status_code != 200:
                    raise self._error(content, file.path)
                yield from content.iter_content(DOWNLOAD_CHUNK)
        except requests.RequestException as exc:
            raise TransientError(f"{self.where}: downloading {file.path!r} broke off: "
                                 f"{type(exc).__name__}") from None


def _path(item_id: str, items: dict, paths: dict) -> str | None:
    """The item's path below the root, or None if its chain of parents is broken."""
    chain: list[str] = []
    current = item_id
    while current not in paths:
        item = items.get(current)
        if item is None:
            paths.update({c: None for c in chain})
            return None
        chain.append(current)
        current = item["parent"]
    base = paths[current]
    for c in reversed(chain):
        base = None if base is None else (f"{base}/{items[c]['name']}" if base else items[c]["name"])
        paths[c] = base
    return paths[item_id]


def _hash_of(hashes: dict) -> str | None:
    """sha256 where Graph gives it (personal drives), else quickXorHash (all drives)."""
    if hashes.get("sha256Hash"):
        return "sha256:" + hashes["sha256Hash"].upper()
    if hashes.get("quickXorHash"):
        return "quickxor:" + hashes["quickXorHash"]
    return None


class _Sha256:
    def __init__(self):
        self._h = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def result(self) -> str:
        return "sha256:" + self._h.hexdigest().upper()


class _QuickXor(QuickXorHash):
    def result(self) -> str:
        return "quickxor:" + self.b64digest()


def _retry_after(response: requests.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("Retry-After", 5))))
    except ValueError:
        return 5.0
