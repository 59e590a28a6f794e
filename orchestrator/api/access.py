"""Who may call what: `Depends(can_read)` on reading endpoints, `Depends(can_change)` on the
ones that change something, `Depends(is_worker)` on the store served to host workers.

Changing needs `Authorization: Bearer <api.token>` (compared in constant time); with no
api.token configured nothing may change (403 saying to set it). Reading follows api.reads:
`open` anyone; `token` the token, always; `loopback` (the default while api.listen is loopback
and api.behind_proxy is not set) clients on 127.0.0.0/8 or ::1 without it, others with it. A
request that came through a proxy (it carries Forwarded, X-Forwarded-For or X-Real-IP) is not
taken for a loopback client even if the proxy runs on this host. A missing or wrong token is
a 401 with `WWW-Authenticate: Bearer`; a wrong one is refused even from loopback (under `open`
no token is looked at).

The store's routes take `Authorization: Bearer <api.worker_token>` and nothing else: not the
operators' token, not a loopback client without it; with no worker_token configured they
answer 403 to everyone.
"""
from __future__ import annotations

import hmac
import ipaddress
from typing import NoReturn

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.config.api_settings import ApiConfig

# Documents the scheme in /openapi.json; the decisions below read the header themselves.
bearer = HTTPBearer(auto_error=False, description="api.token from the Sluice config")
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
SET_TOKEN = "set api.token in the Sluice config (e.g. api: {token: ${SLUICE_API_TOKEN}})"


def can_read(request: Request,
             _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    api = _api(request)
    if api.reads == "open":
        return
    given = _bearer_token(request)
    if api.reads == "loopback" and _from_loopback(request) and (given is None or api.token is None):
        return
    if api.token is None:
        why = "reads need a token" if api.reads == "token" else "reads from other hosts need a token"
        raise HTTPException(403, f"{why} and none is configured: {SET_TOKEN}, or api.reads: open")
    _check(api.token, given)


def can_change(request: Request,
               _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    api = _api(request)
    if api.token is None:
        raise HTTPException(403, f"changes through the API are off: {SET_TOKEN}")
    _check(api.token, _bearer_token(request))


def is_worker(request: Request,
              _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    expected = _api(request).worker_token
    if expected is None:
        raise HTTPException(403, "the store is not served to host workers: set api.worker_token "
                            "in the Sluice config (e.g. api: {worker_token: ${SLUICE_WORKER_TOKEN}})")
    _check(expected, _bearer_token(request), "api.worker_token")


def _bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header; None without one (other schemes,
    e.g. a proxy's Basic auth passed along, are not ours to judge)."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _check(expected: str, given: str | None, setting: str = "api.token") -> None:
    if given is None:
        _refuse(f"this needs Authorization: Bearer <{setting}>")
    # header values arrive decoded as latin-1: encoding them back gives the bytes sent
    if not hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode()):
        _refuse(f"wrong token (Authorization: Bearer <{setting}>)")


def _refuse(message: str) -> NoReturn:
    raise HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def _api(request: Request) -> ApiConfig:
    return request.app.state.services.config.api


def _from_loopback(request: Request) -> bool:
    if any(name in request.headers for name in PROXY_HEADERS) or request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host.split("%")[0])
    except ValueError:
        return False        # e.g. "testclient", a unix socket
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback
