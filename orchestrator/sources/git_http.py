"""In-process head checks over Git's smart-HTTP protocol, with one pooled HTTP client.

Protocol v2 (`ls-refs` with a ref prefix) asks for one ref; servers that speak only v0 send
their whole ref advertisement, which is parsed instead. Once a server has shown it speaks
v2, later checks go straight to `ls-refs`: one request per head check.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from orchestrator.core.errors import AuthenticationFailed, RevisionNotFound, TransientError
from orchestrator.core.urls import sanitize_url
from orchestrator.sources.lean_http import HttpError, Pool, Response

UPLOAD_PACK = "git-upload-pack"
_pool = Pool(timeout=15, headers={"Git-Protocol": "version=2"})
_speaks_v2: set[str] = set()
LS_REFS_HEADERS = {"Content-Type": f"application/x-{UPLOAD_PACK}-request",
                   "Accept": f"application/x-{UPLOAD_PACK}-result"}


def remote_head(url: str, branch: str, auth: tuple[str, str] | None = None) -> str:
    """The commit id `refs/heads/{branch}` points at on the remote."""
    base, ref = url.rstrip("/"), f"refs/heads/{branch}"
    if base in _speaks_v2:
        refs = _ls_refs(base, ref, auth)
    else:
        refs = _advertised(base, ref, auth)
    if ref not in refs:
        raise RevisionNotFound(f"branch {branch!r} not found in {sanitize_url(url)}")
    return refs[ref]


def _advertised(base: str, ref: str, auth) -> dict[str, str]:
    body = _request("GET", f"{base}/info/refs?service={UPLOAD_PACK}", auth).body
    lines = [line for line in pkt_lines(body) if line is not None and not line.startswith(b"# service=")]
    if lines and lines[0].rstrip(b"\n") == b"version 2":
        _speaks_v2.add(base)
        return _ls_refs(base, ref, auth)
    refs = {}
    for line in lines:                       # v0: "<oid> <ref>[\0capabilities]\n"
        oid, _, name = line.split(b"\0")[0].rstrip(b"\n").partition(b" ")
        refs[name.decode()] = oid.decode()
    return refs


def _ls_refs(base: str, ref: str, auth) -> dict[str, str]:
    response = _request("POST", f"{base}/{UPLOAD_PACK}", auth, body=_ls_refs_request(ref),
                        headers=LS_REFS_HEADERS)
    refs = {}
    for line in pkt_lines(response.body):
        if line:                             # "<oid> <ref>[ attributes]\n"
            oid, name = line.rstrip(b"\n").split(b" ")[:2]
            refs[name.decode()] = oid.decode()
    return refs


@lru_cache(maxsize=1024)
def _ls_refs_request(ref: str) -> bytes:
    return (pkt(b"command=ls-refs\n") + pkt(b"agent=sluice\n") + b"0001"
            + pkt(b"ref-prefix " + ref.encode() + b"\n") + b"0000")


def _request(method: str, url: str, auth, **kwargs) -> Response:
    try:
        response = _pool.request(method, url, auth=auth, **kwargs)
    except HttpError as exc:
        raise TransientError(f"{sanitize_url(url.split('?')[0])}: {exc}") from None
    if response.status < 400:
        return response
    shown = sanitize_url(url.split("?")[0])
    if response.status in (401, 403):
        raise AuthenticationFailed(f"{shown}: the server refused the credentials ({response.status})")
    if response.status == 404:
        raise RevisionNotFound(f"{shown}: no Git repository there (404)")
    raise TransientError(f"{shown}: HTTP {response.status}")


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def pkt_lines(data: bytes) -> Iterator[bytes | None]:
    """The payloads of a pkt-line stream; None for flush, delimiter and response-end."""
    i = 0
    while i + 4 <= len(data):
        size = int(data[i:i + 4], 16)
        if size < 4:
            yield None
            i += 4
            continue
        yield data[i + 4:i + size]
        i += size
