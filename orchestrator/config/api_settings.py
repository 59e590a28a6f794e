"""The API's settings (`api:`): where it listens, its tokens (the operators', the host
workers'), who reads without them, the Host names it answers to, and what a zip deploy takes;
and how host names are compared."""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.config.sources import Secret, _Strict

_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class ApiConfig(_Strict):
    listen: str = "127.0.0.1:8080"          # where the API (webhooks, ...) listens
    token: Secret | None = None             # bearer token for mutating endpoints (and reads, per `reads`)
    worker_token: Secret | None = None      # bearer token of host workers fetching from /store (only)
    # who may read without the token; unset: loopback if listen is loopback and no proxy, else token
    reads: Literal["loopback", "open", "token"] = "loopback"
    hosts: list[str] = Field(default_factory=list)   # Host names answered besides loopback's and listen's
    behind_proxy: bool = False              # clients may arrive through a forwarder (TLS, TCP, HTTP)
    # what a zip deploy (/scm/{app}/api/zipdeploy) takes: the body, and what it unzips to
    max_zip_bytes: int = Field(default=2 * 1024 ** 3, ge=1)
    max_unzipped_bytes: int = Field(default=8 * 1024 ** 3, ge=1)
    max_zip_ratio: float = Field(default=200.0, gt=1)
    max_zip_entries: int = Field(default=200_000, ge=1)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen {value!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        return [host_name(name) for name in value]

    @model_validator(mode="before")
    @classmethod
    def _default_reads(cls, data: Any) -> Any:
        """Unset reads: `loopback` only where every client on loopback really is this host's."""
        if not isinstance(data, dict) or "reads" in data:
            return data
        direct = not data.get("behind_proxy") and is_loopback(str(data.get("listen") or "127.0.0.1:8080"))
        return {**data, "reads": "loopback" if direct else "token"}

    @model_validator(mode="after")
    def _loopback_reads_need_direct_clients(self):
        if self.reads == "loopback" and self.behind_proxy:
            raise ValueError("reads: loopback cannot hold with behind_proxy: true (every client of a "
                             "forwarder on this host arrives from loopback): use reads: token, or open")
        return self

    @model_validator(mode="after")
    def _tokens_apart(self):
        if self.worker_token is not None and self.worker_token == self.token:
            raise ValueError("worker_token must differ from token: a host worker's token opens the "
                             "store only, the operators' changes what is live")
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def host_names(self) -> frozenset[str]:
        """The Host names the API answers to: loopback's, the listen address unless it is
        every address (0.0.0.0, ::), and `hosts`."""
        listen = () if self.host in ("", "0.0.0.0", "::") else (plain_host(self.host),)
        return frozenset((*LOOPBACK_NAMES, *listen, *self.hosts))

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def host_name(name: str) -> str:
    """An `api.hosts` entry as Host headers are compared with it (see plain_host); `*` is
    any name, `*.example.com` any name below it."""
    plain = plain_host(name)
    if plain == "*" or _HOST_NAME.match(plain.removeprefix("*.")) or _is_address(plain):
        return plain
    raise ValueError(f"host {name!r} must be a name as clients write it, without scheme or port "
                     "(e.g. sluice.example.com, *.example.com), or '*' for any")


def plain_host(name: str) -> str:
    """A host name in one spelling: lower case, no trailing dot, an IP address in its short
    form and IPv6 without brackets."""
    plain = name.strip().lower().rstrip(".")
    if plain.startswith("[") and plain.endswith("]"):
        plain = plain[1:-1]
    try:
        return str(ipaddress.ip_address(plain))
    except ValueError:
        return plain


def _is_address(name: str) -> bool:
    try:
        return bool(ipaddress.ip_address(name))
    except ValueError:
        return False


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]").lower()
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
