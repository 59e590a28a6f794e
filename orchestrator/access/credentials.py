"""Deployment credentials: one user name and password per app, as Azure App Service has.

The password is kept only as a salted scrypt hash in Redis (`sluice:credentials:{app}`);
the app's event stream records that the credentials changed and for which user, never the
secret. Every endpoint that takes them (the built-in Git repository, FTP/FTPS) checks them
through `Verifier`, which takes each attempt's turn and hash slot from login_throttle.py.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.access.login_throttle import LoginThrottle
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute
from orchestrator.core.errors import SluiceError
from orchestrator.runtime.services import Services

SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERIFIED_CACHE_SECONDS = 60.0     # a Git clone logs in several times in a row


class CredentialsRejected(SluiceError):
    """The user name or password does not meet the policy."""


@dataclass(frozen=True)
class Credentials:
    user: str
    salt: str
    hash: str
    params: dict


# What an unknown app or user is checked against, so that it costs what a known one does.
DECOY = Credentials(user="", salt=os.urandom(16).hex(), hash=os.urandom(32).hex(), params=SCRYPT)
Hasher = Callable[[str, bytes, dict], bytes]


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
    record = {"user": user, "salt": salt.hex(), "hash": scrypt_hash(password, salt, SCRYPT).hex(),
              "params": SCRYPT}
    services.redis.set(keys.credentials(app), json.dumps(record))
    now = services.clock.now()
    execute(services.projections, app, lambda view: [ev.CredentialsChanged(app=app, at=now, user=user)])


def credentials_of(services: Services, app: str) -> Credentials | None:
    raw = services.redis.get(keys.credentials(app))
    return Credentials(**json.loads(raw)) if raw else None


class Verifier:
    """Checks logins for every app: the same hash work whatever was wrong (an unknown app or
    user is hashed against a decoy), recent successes remembered (a Git clone logs in several
    times in a row), and each attempt's turn and hash slot taken from `throttle`."""

    def __init__(self, services: Services, hasher: Hasher | None = None,
                 throttle: LoginThrottle | None = None):
        self.services, self.hasher = services, hasher or scrypt_hash
        self.throttle = throttle or LoginThrottle(services.redis, services.clock)
        self._recent: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def login(self, address: str, app: str, user: str, password: str) -> bool:
        """Whether `user` and `password` open `app`, once the attempt had its turn (see
        LoginThrottle.admit); raises TooManyLogins if no hash slot is free."""
        stored, token = self._stored(app, user, password)
        if not self._recently_verified(token):
            with self.throttle.hashing(address):
                if not self._verify(stored, user, password, token):
                    return False
        self.throttle.succeeded(address, app)
        return True

    def check(self, app: str, user: str, password: str) -> bool:
        """Whether the credentials are right, taking no turn and no hash slot."""
        stored, token = self._stored(app, user, password)
        return self._recently_verified(token) or self._verify(stored, user, password, token)

    def _stored(self, app: str, user: str, password: str) -> tuple[Credentials, bytes]:
        # An app removed from the config may still have credentials in Redis: they open nothing.
        stored = credentials_of(self.services, app)
        if app not in self.services.config.apps or stored is None:
            stored = DECOY
        return stored, hashlib.sha256(f"{app}\0{stored.hash}\0{user}\0{password}".encode()).digest()

    def _recently_verified(self, token: bytes) -> bool:
        with self._lock:
            return self._recent.get(token, 0.0) > self.services.clock.now()

    def _verify(self, stored: Credentials, user: str, password: str, token: bytes) -> bool:
        digest = self.hasher(password, bytes.fromhex(stored.salt), stored.params)
        right = hmac.compare_digest(digest.hex(), stored.hash) \
            & hmac.compare_digest(stored.user.encode(), user.encode())
        if not right or stored is DECOY:
            return False
        with self._lock:
            if len(self._recent) > 10000:
                self._recent.clear()
            self._recent[token] = self.services.clock.now() + VERIFIED_CACHE_SECONDS
        return True


def scrypt_hash(password: str, salt: bytes, params: dict) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **params)
