"""Which Host names the API answers to, against DNS rebinding: a page on evil.example whose
name is made to point at 127.0.0.1 reaches the API from the browser as a loopback client,
but its requests still say `Host: evil.example`. Such a request is answered 421 Misdirected
Request, whatever its path, before any route runs; so are requests without a Host.

The names answered: localhost, 127.0.0.1 and ::1, the address of api.listen unless it is
every address (0.0.0.0, ::), and api.hosts (`*` any name, `*.example.com` any below it);
the port a Host carries is not looked at. /healthz and /readyz answer any Host: they tell
nothing, and probes often address the API by an address of its container.
"""
from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.errors import error_response
from orchestrator.config.api_settings import plain_host

log = logging.getLogger("sluice.api")
ANY_HOST_PATHS = frozenset({"/healthz", "/readyz"})
WARNED_AT_MOST = 64         # refused names logged once each, so a flood cannot fill the log


class HostCheck:
    """ASGI middleware refusing requests to names that are not in `names`."""

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app, self.names = app, names
        self.warned: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in ANY_HOST_PATHS:
            host = request_host(scope)
            if host is None or not answers_to(self.names, host):
                what = "a request without a Host header" if host is None else f"host {host!r}"
                self._warn(what)
                await error_response(421, f"this API does not answer to {what}: "
                                          "list the name in api.hosts")(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _warn(self, what: str) -> None:
        if what not in self.warned and len(self.warned) < WARNED_AT_MOST:
            self.warned.add(what)
            log.warning("refused %s: not in api.hosts (nor loopback, nor api.listen)", what)


def request_host(scope: Scope) -> str | None:
    """The name of the request's Host header without its port; None without one."""
    raw = next((value for name, value in scope["headers"] if name == b"host"), None)
    if raw is None:
        return None
    host = raw.decode("latin-1").strip()
    if host.startswith("["):
        host = host[:host.find("]") + 1]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return plain_host(host)


def answers_to(names: frozenset[str], host: str) -> bool:
    if "*" in names or host in names:
        return True
    return any(host.endswith(name[1:]) for name in names if name.startswith("*."))
