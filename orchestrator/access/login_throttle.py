"""How fast logins with deployment credentials may be tried, for every endpoint that takes
them (the built-in Git repository over HTTP, FTP/FTPS): one piece of code for both.

Turns, per address and app, kept in Redis so that every process serving logins shares them:
an attempt is counted as a failure when it is admitted, before any hash is computed (a
success then forgets the address's failures at that app), so hanging up early saves a
guesser nothing. From the 4th attempt each one's turn comes 0.5 s after the previous one's,
doubling up to 8 s; turns queue one behind another, so guesses sent in parallel get no
further than guesses sent one by one. An attempt whose turn would be more than 8 s away is
refused at once (`TooManyLogins`, saying when to retry), is not counted and costs no hash.

Hashes in flight, per process: scrypt is slow and memory-hungry on purpose, so at most
`HASHES_PER_ADDRESS` are computed at once for one address and `HASHES_IN_ALL` in all;
an attempt beyond them is refused too.
"""
from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from orchestrator.core import keys
from orchestrator.core.clock import Clock

FREE_FAILURES = 3           # attempts from one address at one app before turns space out
FIRST_DELAY = 0.5
MAX_DELAY = 8.0
FAILURE_MEMORY = 900        # seconds an address's failures at an app are remembered
HASHES_PER_ADDRESS = 2
HASHES_IN_ALL = 4
BUSY_RETRY = 1.0            # seconds: a hash takes well under one

# KEYS[1] the attempts hash; ARGV: now, memory, max delay, then the delay after 0, 1, 2...
# failures (the last one for any more). Returns {admitted, seconds}: the wait for the turn,
# or when to retry.
_ADMIT = """
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'turn') or '0')
local now, most = tonumber(ARGV[1]), tonumber(ARGV[3])
local delay = tonumber(ARGV[4 + math.min(failures, #ARGV - 4)])
local turn = math.max(now, last) + delay
if turn - now > most then
  return {0, tostring(turn - now - most)}
end
redis.call('HSET', KEYS[1], 'failures', failures + 1, 'turn', tostring(turn))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1, tostring(turn - now)}
"""


class TooManyLogins(Exception):
    """Refused before any check: the address must wait `retry_after` whole seconds."""

    def __init__(self, retry_after: float):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many login attempts; try again in {self.retry_after} s")


def delays(first: float = FIRST_DELAY, most: float = MAX_DELAY) -> list[float]:
    """The wait between turns after 0, 1, 2... failures, up to the first that reaches `most`."""
    steps = [0.0] * FREE_FAILURES
    while not steps or steps[-1] < most:
        steps.append(min(most, first * 2 ** (len(steps) - FREE_FAILURES)))
    return steps


class HashSlots:
    """The hashes this process is computing, per address and in all."""

    def __init__(self, per_address: int = HASHES_PER_ADDRESS, in_all: int = HASHES_IN_ALL):
        self.per_address, self.in_all = per_address, in_all
        self._busy: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def taken(self, address: str) -> Iterator[None]:
        with self._lock:
            if self._busy[address] >= self.per_address or self._busy.total() >= self.in_all:
                raise TooManyLogins(BUSY_RETRY)
            self._busy[address] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[address] -= 1
                if not self._busy[address]:
                    del self._busy[address]


class LoginThrottle:
    def __init__(self, client: redis.Redis, clock: Clock, slots: HashSlots | None = None,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY):
        self.redis, self.clock = client, clock
        self.slots = slots or HashSlots()
        self._delays, self._max = delays(first_delay, max_delay), max_delay
        self._admit = client.register_script(_ADMIT)

    def admit(self, address: str, app: str) -> float:
        """Count an attempt from `address` at `app` as a failure and return the seconds until
        its turn; raise TooManyLogins (and count nothing) if that is too far away."""
        admitted, seconds = self._admit(
            keys=[keys.login_attempts(address, app)],
            args=[repr(self.clock.now()), FAILURE_MEMORY, repr(self._max),
                  *map(repr, self._delays)])
        if not int(admitted):
            raise TooManyLogins(float(seconds))
        return float(seconds)

    def hashing(self, address: str):
        """Hold a slot for one hash for `address` (a context manager); TooManyLogins if none."""
        return self.slots.taken(address)

    # Per address and app: a success on one app (say, the attacker's own) must not wipe the
    # failures piling up against another.
    def succeeded(self, address: str, app: str) -> None:
        self.redis.delete(keys.login_attempts(address, app))

    def failures(self, address: str, app: str) -> int:
        return int(self.redis.hget(keys.login_attempts(address, app), "failures") or 0)
