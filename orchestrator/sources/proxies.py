"""Which HTTP proxy, if any, the head checks reach an origin through: the environment's
http_proxy, https_proxy, all_proxy and no_proxy (lower or upper case), read by the same
functions requests reads them with, so head checks take the way the Dropbox and OneDrive
clients take, and the way git's own fetch takes.

A process's environment changes only from inside it, so each origin's answer is kept; a
test that sets the variables calls forget() for them to be read again.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from requests.utils import get_auth_from_url, get_environ_proxies, prepend_scheme_if_needed, select_proxy

from orchestrator.core import basic_auth


@dataclass(frozen=True)
class Proxy:
    scheme: str                      # only http:// proxies carry head checks
    host: str
    port: int
    authorization: str | None        # Proxy-Authorization, from user:password@ in its URL

    def describe(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@lru_cache(maxsize=4096)
def proxy_for(scheme: str, host: str, port: int) -> Proxy | None:
    url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/"
    chosen = select_proxy(url, get_environ_proxies(url))
    return _parse(chosen) if chosen else None


def forget() -> None:
    """Read the environment again at the next request (after a test changed it)."""
    proxy_for.cache_clear()


def _parse(value: str) -> Proxy:
    url = prepend_scheme_if_needed(value, "http")          # "proxy:3128", as requests takes it
    parts = urlsplit(url)
    user, password = get_auth_from_url(url)
    authorization = basic_auth.header(user, password) if user or password else None
    default_port = 443 if parts.scheme == "https" else 1080 if parts.scheme.startswith("socks") else 80
    return Proxy(parts.scheme, parts.hostname or "", parts.port or default_port, authorization)
