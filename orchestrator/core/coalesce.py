"""Concurrent requests for the same work, coalesced across processes: every request is
answered by a run that started after it arrived (so the run saw whatever the request was
about), runs for one key never overlap, and a burst of requests costs a run or two, not
one each.

A request takes a ticket. A run notes the last ticket issued before it starts working; its
result answers every ticket up to that note. Whoever holds the key's lock runs; the others
wait for a result that covers their ticket, or for the lock to be free. The lock expires by
itself, so a run that died only delays the next one. A run that failed because Redis went
away could not let go of the lock either: the next request for the key in the same process
lets go of it once Redis answers, instead of waiting for it to expire.
"""
from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import redis

from orchestrator.core import replies
from orchestrator.core.errors import TransientError

T = TypeVar("T")
KEEP_MS = 24 * 3600 * 1000      # tickets and the last result: long after any request waits
LOOK_INTERVAL = (0.01, 0.04)    # seconds between looks at a busy key

_TAKE_TICKET = """
local ticket = redis.call('HINCRBY', KEYS[1], 'asked', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return ticket
"""
_START = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return tonumber(redis.call('HGET', KEYS[1], 'asked') or '0')
end
return -1
"""
_FINISH = """
local covered = tonumber(redis.call('HGET', KEYS[1], 'covered') or '0')
if tonumber(ARGV[2]) > covered then
  redis.call('HSET', KEYS[1], 'covered', ARGV[2], 'result', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
"""
_LET_GO = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"
_HELD: dict[str, str] = {}      # lock key -> token of a run that ended but could not let go


class Coalesced:
    """Runs `work` for requests under `key`; results travel between processes as text."""

    def __init__(self, client: redis.Redis, key: str, run_timeout: float = 120.0,
                 wait_timeout: float = 120.0):
        self.client, self.key, self.running_key = client, key, key + ":running"
        self.run_ms, self.wait_timeout = int(run_timeout * 1000), wait_timeout
        self._take = client.register_script(_TAKE_TICKET)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self._let_go = client.register_script(_LET_GO)

    def request(self, work: Callable[[], T], encode: Callable[[T], str],
                decode: Callable[[str], T]) -> tuple[T, bool]:
        """The result of a run that started after this request; and whether this request ran it."""
        return self.answer(self.ask(), work, encode, decode)

    def ask(self) -> int:
        """Take a ticket: a request's place, before any answer to it (`answer` may follow later,
        elsewhere: what counts is that the run answering it starts after this)."""
        return int(self._take(keys=[self.key], args=[KEEP_MS]))

    def pending(self) -> bool:
        """Whether a ticket taken is not answered yet."""
        asked, covered = replies.values(self.client.hmget(self.key, "asked", "covered"))
        return int(asked or 0) > int(covered or 0)

    def answer(self, ticket: int, work: Callable[[], T], encode: Callable[[T], str],
               decode: Callable[[str], T]) -> tuple[T, bool]:
        """The result of a run that started after `ticket` was taken; and whether this call ran it."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            covered, result = replies.values(self.client.hmget(self.key, "covered", "result"))
            if covered is not None and int(covered) >= ticket and result is not None:
                return decode(result.decode()), False
            self._let_go_of_a_failed_run()
            run = self._begin()
            if run is not None:
                return self._run(run, work, encode), True
            if time.monotonic() > deadline:
                raise TransientError(f"{self.key}: no run answered within {self.wait_timeout:.0f}s")
            time.sleep(random.uniform(*LOOK_INTERVAL))

    def _let_go_of_a_failed_run(self) -> None:
        token = _HELD.pop(self.running_key, None)
        if token is None:
            return
        try:
            self._let_go(keys=[self.running_key], args=[token])
        except redis.RedisError:
            _HELD.setdefault(self.running_key, token)   # at the next request, Redis back

    def _begin(self) -> tuple[str, int] | None:
        """The lock's token and the last ticket noted, if the key was free."""
        token = uuid.uuid4().hex
        noted = int(self._start(keys=[self.key, self.running_key], args=[token, self.run_ms]))
        return (token, noted) if noted >= 0 else None

    def _run(self, run: tuple[str, int], work: Callable[[], T], encode: Callable[[T], str]) -> T:
        token, noted = run
        try:
            result = work()
        except BaseException:
            _HELD[self.running_key] = token
            self._let_go_of_a_failed_run()
            raise
        self._finish(keys=[self.key, self.running_key], args=[token, noted, encode(result), KEEP_MS])
        return result
