"""Per-app deployment lease with a fencing token.

One deployment per app at a time across any number of workers. The lease expires by
itself (no lock ever needs clearing by hand) and is renewed while work goes on; each grant
carries a fencing token that only grows, and the holder proves it still holds that token
right before it switches the target.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import redis

from orchestrator.core import keys
from orchestrator.core.errors import TransientError

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""
_HOLDS = """
local value = redis.call('GET', KEYS[1])
if not value or string.match(value, '^(%d+):') ~= ARGV[1] then return 0 end
if ARGV[2] == 'renew' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if ARGV[2] == 'release' then redis.call('DEL', KEYS[1]) end
return 1
"""


class LeaseBusy(TransientError):
    """Another deployment of the app runs: wait for it (this is not a failed attempt)."""


class LeaseLost(TransientError):
    """The lease expired while this holder worked: it must not switch the target."""


class Lease:
    def __init__(self, client: redis.Redis, app: str, holder: str, ttl: float = 30.0):
        self.app, self.holder, self.ttl_ms = app, holder, int(ttl * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._holds = client.register_script(_HOLDS)
        self._keys = [keys.lease(app), keys.lease_fence(app)]
        self.token: int | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> Lease:
        return self if self.token is not None else self.acquire()

    def acquire(self) -> Lease:
        """Take the lease now (LeaseBusy if another holder has it) and keep renewing it."""
        token = int(self._acquire(keys=self._keys, args=[self.holder, self.ttl_ms]))
        if not token:
            raise LeaseBusy(f"app {self.app!r} is being deployed by another worker (lease busy)")
        self.token = token
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._renewer:
            self._renewer.join()
        self._call("release")

    def check(self) -> None:
        """Raise LeaseLost unless this holder's token is still the granted one."""
        if not self._call("renew"):
            raise LeaseLost(f"app {self.app!r}: lease {self.token} expired; not switching")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self._call("renew")
            except redis.RedisError:
                pass     # the check before the switch decides; a blip here is not fatal

    def _call(self, action: str) -> bool:
        if self.token is None:      # never acquired: there is nothing to renew, check or release
            return False
        return bool(self._holds(keys=self._keys, args=[self.token, action, self.ttl_ms]))


def held_with(client: redis.Redis, app: str, token: int) -> Callable[[], None]:
    """A check that raises LeaseLost unless the app's lease is still granted under `token`:
    what a host's worker, switching for the worker that holds the lease (issue 19), proves
    under its target's lock, as the holder itself does with `Lease.check`."""
    holds = client.register_script(_HOLDS)

    def check() -> None:
        if not holds(keys=[keys.lease(app), keys.lease_fence(app)], args=[token, "check", 0]):
            raise LeaseLost(f"app {app!r}: lease {token} is no longer granted; not switching")
    return check

