"""Deployment credentials: one user name and password per app, as Azure App Service has.

The password is kept only as a salted scrypt hash in Redis (`sluice:credentials:{app}`);
the app's event stream records that the credentials changed and for which user, never the
secret. Every endpoint that takes them (the built-in Git repository, FTP/FTPS) checks them
through `Verifier`, which also slows down an address that keeps failing.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
import time
from dataclasses import dataclass

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute
from orchestrator.core.errors import SluiceError
from orchestrator.runtime.services import Services

SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FREE_FAILURES = 3                 # failed logins from one address before each costs a delay
MAX_DELAY = 8.0
FAILURE_MEMORY = 900              # seconds an address's failures are remembered
VERIFIED_CACHE_SECONDS = 60.0     # a Git clone logs in several times in a row


class CredentialsRejected(SluiceError):
    """The user name or password does not meet the policy."""


@dataclass(frozen=True)
class Credentials:
    user: str
    salt: str
    hash: str
    params: dict

    def matches(self, password: str) -> bool:
        digest = _scrypt(password, bytes.fromhex(self.salt), self.params)
        return hmac.compare_digest(digest.hex(), self.hash)


def check_policy(user: str, password: str) -> None:
    """Like Azure App Service: a user name without '@' (nor the ':' and '\\' that Basic auth and
    FTP's APP\\USER form use), a password of 8+ characters using two of letters, digits,
    symbols."""
    if not USER_NAME.match(user):
        raise CredentialsRejected(f"user name {user!r} must be 1-64 letters, digits, '.', '_' "
                                  "or '-' (no '@', ':' or '\\')")
    kinds = sum(bool(re.search(p, password)) for p in (r"[A-Za-z]", r"[0-9]", r"[^A-Za-z0-9]"))
    if len(password) < 8 or kinds < 2:
        raise CredentialsRejected("the password must be at least 8 characters and use two of: "
                                  "letters, digits, symbols")


def set_credentials(services: Services, app: str, user: str, password: str) -> None:
    check_policy(user, password)
    salt = os.urandom(16)
    record = {"user": user, "salt": salt.hex(), "hash": _scrypt(password, salt, SCRYPT).hex(),
              "params": SCRYPT}
    services.redis.set(keys.credentials(app), json.dumps(record))
    now = services.clock.now()
    execute(services.projections, app, lambda view: [ev.CredentialsChanged(app=app, at=now, user=user)])


def credentials_of(services: Services, app: str) -> Credentials | None:
    raw = services.redis.get(keys.credentials(app))
    return Credentials(**json.loads(raw)) if raw else None


class Verifier:
    """Checks logins for every app, remembering recent successes (scrypt is slow on purpose)
    and delaying addresses after repeated failures (the delay is the caller's to sleep)."""

    def __init__(self, services: Services, clock=time.monotonic):
        self.services, self.clock = services, clock
        self._recent: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def check(self, app: str, user: str, password: str) -> bool:
        stored = credentials_of(self.services, app)
        if stored is None or not hmac.compare_digest(stored.user.encode(), user.encode()):
            _scrypt(password, b"\0" * 16, SCRYPT)    # as slow as a wrong password: no hint
            return False
        token = hashlib.sha256(f"{app}\0{stored.hash}\0{password}".encode()).digest()
        with self._lock:
            if self._recent.get(token, 0.0) > self.clock():
                return True
        if not stored.matches(password):
            return False
        with self._lock:
            if len(self._recent) > 10000:
                self._recent.clear()
            self._recent[token] = self.clock() + VERIFIED_CACHE_SECONDS
        return True

    # Failures count per address and app: a success on one app (say, the attacker's own)
    # must not wipe the failures piling up against another.
    def delay_for(self, address: str, app: str) -> float:
        """Seconds to hold an answer to `address` about `app` before it may try again."""
        failures = int(self.services.redis.get(keys.login_failures(address, app)) or 0)
        return 0.0 if failures < FREE_FAILURES else min(MAX_DELAY, 0.5 * 2 ** (failures - FREE_FAILURES))

    def failed(self, address: str, app: str) -> None:
        key = keys.login_failures(address, app)
        pipe = self.services.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, FAILURE_MEMORY)
        pipe.execute()

    def succeeded(self, address: str, app: str) -> None:
        self.services.redis.delete(keys.login_failures(address, app))


def _scrypt(password: str, salt: bytes, params: dict) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **params)
