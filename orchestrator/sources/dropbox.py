"""Dropbox folders through the official SDK: a recursive `list_folder` once, then
`list_folder/continue` on the stored cursor; `list_folder/longpoll` tells the poller within
seconds that something changed. Files are downloaded only when the store does not hold
their `content_hash` already, and must hash to it when they arrive.

The SDK itself retries 429s (honouring Retry-After), retries 5xx with backoff and refreshes
an expired access token with the refresh token. API hosts come from the SDK's own
environment variables (DROPBOX_API_HOST, ...); requests' REQUESTS_CA_BUNDLE, when set, names
the CAs to trust.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import dropbox
import requests
from dropbox import exceptions as dbx_errors
from dropbox.files import (
    DeletedMetadata,
    FileMetadata,
    ListFolderContinueError,
    ListFolderLongpollError,
    ListFolderResult,
)

from orchestrator.config.sources import DropboxSourceConfig
from orchestrator.core.errors import (
    AuthenticationFailed,
    PermanentError,
    RevisionNotFound,
    SluiceError,
    TransientError,
)
from orchestrator.sources.cloud_folder import CloudFolderSource, Listing, RemoteFile, relative_name
from orchestrator.sources.cloud_hashes import DropboxContentHash

PAGE = 2000
DOWNLOAD_CHUNK = 1024 * 1024
LONGPOLL_SECONDS = 30          # Dropbox adds up to 90 s of jitter; the client waits longer
log = logging.getLogger("sluice.dropbox")
_clients: dict[tuple, dropbox.Dropbox] = {}
_clients_lock = threading.Lock()


def _client(config: DropboxSourceConfig) -> dropbox.Dropbox:
    """One SDK client per credentials and process, so a refreshed access token is reused."""
    key = (os.getpid(), config.app_key, config.app_secret, config.refresh_token, config.access_token)
    with _clients_lock:
        if key not in _clients:
            session = dropbox.create_session(max_connections=16)
            _clients[key] = dropbox.Dropbox(
                oauth2_access_token=config.access_token, oauth2_refresh_token=config.refresh_token,
                app_key=config.app_key, app_secret=config.app_secret, session=session,
                max_retries_on_error=3, max_retries_on_rate_limit=5, timeout=180,
                user_agent="sluice")
        return _clients[key]


class DropboxSource(CloudFolderSource):
    hash_kind = "dropbox-content-hash"

    def __init__(self, config: DropboxSourceConfig, cache_dir: Path):
        who = f"{config.app_key}\0{config.access_token if not config.app_key else ''}\0{config.path}"
        super().__init__(config, cache_dir, who)

    def wait_for_change(self, cursor: str) -> float:
        """Block on `list_folder/longpoll` until the folder changes or the call times out;
        seconds to wait before the next longpoll (0 unless Dropbox asked for a backoff),
        negative when something changed or Dropbox reset the cursor (the head check then
        lists the folder again and stores a fresh one)."""
        try:
            result = _client(self.config).files_list_folder_longpoll(cursor, LONGPOLL_SECONDS)
        except dbx_errors.ApiError as exc:
            if not _is_reset(exc):
                raise self._error(exc) from None
            log.info("%s: cursor reset by Dropbox; the next head check lists the folder again",
                     self.where)
            return -1.0
        except Exception as exc:
            raise self._error(exc) from None
        backoff = float(result.backoff or 0)
        return -1.0 if result.changes else backoff

    def sync(self, listing: Listing) -> bool:
        dbx = _client(self.config)
        try:
            if listing.cursor:
                try:
                    result = dbx.files_list_folder_continue(listing.cursor)
                except dbx_errors.ApiError as exc:
                    if not _is_reset(exc):
                        raise
                    log.info("%s: cursor reset by Dropbox; listing the folder again", self.where)
                    listing.cursor, listing.files = None, {}
            if not listing.cursor:
                result = dbx.files_list_folder(self._root(), recursive=True, limit=PAGE)
            changed = self._apply(listing, result)
            while result.has_more:
                result = dbx.files_list_folder_continue(result.cursor)
                changed |= self._apply(listing, result)
        except SluiceError:
            raise
        except Exception as exc:
            raise self._error(exc) from None
        listing.cursor = result.cursor
        return changed

    def _root(self) -> str:
        return f"/{self.config.path}" if self.config.path else ""

    def _apply(self, listing: Listing, result: ListFolderResult) -> bool:
        for entry in result.entries:
            if isinstance(entry, FileMetadata):
                path = relative_name(entry.path_display, self.config.path)
                if path is not None:
                    listing.files[entry.path_lower] = RemoteFile(path, entry.content_hash,
                                                                 entry.size, entry.id)
            elif isinstance(entry, DeletedMetadata):
                gone = entry.path_lower
                for key in [k for k in listing.files if k == gone or k.startswith(gone + "/")]:
                    del listing.files[key]
        return bool(result.entries)

    def hasher(self, file: RemoteFile) -> _ContentHash:
        return _ContentHash()

    def download(self, file: RemoteFile) -> Iterator[bytes]:
        try:
            _, response = _client(self.config).files_download(file.ref)
        except Exception as exc:
            raise self._error(exc, file.path) from None
        with response:
            try:
                yield from response.iter_content(DOWNLOAD_CHUNK)
            except requests.RequestException as exc:
                raise TransientError(f"{self.where}: downloading {file.path!r} broke off: "
                                     f"{type(exc).__name__}") from None

    def _error(self, exc: Exception, entry: str | None = None) -> SluiceError:
        what = f"{self.where}" + (f" ({entry!r})" if entry else "")
        if isinstance(exc, dbx_errors.AuthError):
            return AuthenticationFailed(f"{what}: Dropbox refused the credentials "
                                        f"({_summary(exc)}); check app_key/refresh_token")
        if isinstance(exc, dbx_errors.BadInputError):
            return AuthenticationFailed(f"{what}: Dropbox refused the request: {exc.message}") \
                if "token" in (exc.message or "").lower() else PermanentError(f"{what}: {exc.message}")
        if isinstance(exc, dbx_errors.ApiError):
            summary = _summary(exc)
            if "not_found" in summary:
                return RevisionNotFound(f"{what}: not found in Dropbox ({summary})")
            return PermanentError(f"{what}: Dropbox answered {summary}")
        if isinstance(exc, (dbx_errors.InternalServerError, dbx_errors.RateLimitError,
                            dbx_errors.HttpError, requests.RequestException)):
            return TransientError(f"{what}: Dropbox unavailable: {type(exc).__name__}"
                                  + (f" {exc.status_code}" if hasattr(exc, "status_code") else ""))
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")


class _ContentHash(DropboxContentHash):
    def result(self) -> str:
        return self.hexdigest()


def _is_reset(exc: dbx_errors.ApiError) -> bool:
    """The `reset` of list_folder/continue and list_folder/longpoll: start over with a
    fresh listing."""
    return isinstance(exc.error, ListFolderContinueError | ListFolderLongpollError) and \
        exc.error.is_reset()


def _summary(exc: Exception) -> str:
    return getattr(exc, "error_summary", None) or str(getattr(exc, "error", "")) or type(exc).__name__
