"""The TLS context of the HTTP calls after the switch (activate's `http`, the `health` probe).
httpx builds a new one, loading the CA certificates again, for every client it makes: some
40 ms, ten times a health probe's own round trip on this machine (bench/health.py), spent on
every verification. One context, built as httpx builds it, serves every call of the process;
a changed SSL_CERT_FILE or SSL_CERT_DIR (which httpx honours) builds another."""
from __future__ import annotations

import os
import ssl
from functools import lru_cache

import httpx


def verified_context() -> ssl.SSLContext:
    """What `verify=` gets: certificates and host names checked, as httpx's default does."""
    return _context(os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))


@lru_cache(maxsize=4)
def _context(cert_file: str, cert_dir: str) -> ssl.SSLContext:
    # the environment is the cache's key: httpx reads it itself
    return httpx.create_ssl_context()
