"""Access tokens for Microsoft Graph from MSAL, with MSAL's token cache kept on disk.

App-only (client credentials) for business drives; delegated (a refresh token, redeemed
once, then MSAL's own cache and refresh) for personal drives. The cache file is written
under an exclusive lock whenever MSAL changed it, so the poller and the workers share one
sign-in and a restart does not lose it. It holds tokens: created 0600.
"""
from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import msal

from orchestrator.config.sources import OneDriveSourceConfig
from orchestrator.core.errors import AuthenticationFailed

APP_ONLY_SCOPES = ["https://graph.microsoft.com/.default"]
DELEGATED_SCOPES = ["Files.Read"]
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


_tokens: dict[tuple, GraphTokens] = {}
_tokens_lock = threading.Lock()


def tokens_for(config: OneDriveSourceConfig, cache_file: Path) -> GraphTokens:
    """One per sign-in and process: an MSAL application fetches the authority's metadata
    when it is made, and a poller makes a source object for every head check."""
    key = (os.getpid(), config.model_dump_json(), str(cache_file))
    with _tokens_lock:
        if key not in _tokens:
            _tokens[key] = GraphTokens(config, cache_file)
        return _tokens[key]


class GraphTokens:
    def __init__(self, config: OneDriveSourceConfig, cache_file: Path):
        self.config, self.cache_file = config, Path(cache_file)
        self._lock = threading.Lock()
        self._cache = msal.SerializableTokenCache()
        self._loaded: tuple | None = None     # the file as last read or written: no need to
                                              # parse it again for every Graph request
        self._app = None

    def get(self) -> str:
        with self._lock, self._shared_cache() as cache:
            self._app = self._app or self._application(cache)
            result = self._acquire(self._app)
        if "access_token" not in result:
            raise AuthenticationFailed(
                f"onedrive /{self.config.path}: the sign-in was refused: "
                f"{result.get('error', 'no token')}: {_first_line(result.get('error_description'))}")
        return result["access_token"]

    def forget_access_tokens(self) -> None:
        """Graph refused a token MSAL still thinks valid: drop the cached access tokens so
        the next `get` asks for a new one."""
        with self._lock, self._shared_cache() as cache:
            for token in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(token)

    def _acquire(self, app) -> dict:
        if self.config.client_secret:
            return app.acquire_token_for_client(APP_ONLY_SCOPES)
        accounts = app.get_accounts()
        result = app.acquire_token_silent(DELEGATED_SCOPES, account=accounts[0]) if accounts else None
        return result or app.acquire_token_by_refresh_token(self.config.refresh_token, DELEGATED_SCOPES)

    def _application(self, cache: msal.SerializableTokenCache):
        c = self.config
        custom = c.authority_host.rstrip("/") != DEFAULT_AUTHORITY_HOST
        options = dict(authority=f"{c.authority_host.rstrip('/')}/{c.tenant}", token_cache=cache,
                       validate_authority=not custom,
                       instance_discovery=not custom)
        if c.client_secret:
            return msal.ConfidentialClientApplication(c.client_id, client_credential=c.client_secret,
                                                      **options)
        return msal.PublicClientApplication(c.client_id, **options)

    @contextmanager
    def _shared_cache(self):
        """MSAL's cache as on disk now; written back, under the lock, if MSAL changed it."""
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.cache_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            cache = self._cache
            if _stamp(fd) != self._loaded:      # another process wrote it: read it again
                with open(fd, closefd=False) as f:
                    cache.deserialize(f.read() or None)
                self._loaded = _stamp(fd)
            yield cache
            if cache.has_state_changed:
                data = cache.serialize().encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                self._loaded = _stamp(fd)
        finally:
            os.close(fd)


def _stamp(fd: int) -> tuple[int, int, int]:
    st = os.fstat(fd)
    return st.st_ino, st.st_mtime_ns, st.st_size


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
