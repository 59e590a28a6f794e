"""The `sluice poller` service: cheap head checks of due sources, deployments on change.

Due times live in one Redis sorted set (app -> unix time). A poller claims due apps with
one Lua script that pushes their score ahead by a claim timeout, so several pollers can run
at once without checking the same source twice; a poller that dies mid-check simply lets
the claim time out. A check that Redis failed (gone away mid-check) leaves its claim too,
which this poller, still alive, lifts at its first round once Redis answers: the source is
checked again then, not a claim timeout later.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis

from orchestrator.config.settings import AppConfig
from orchestrator.core import keys, replies
from orchestrator.core.backoff import backoff_delay
from orchestrator.core.errors import SluiceError
from orchestrator.deploying.dispatch import Queued
from orchestrator.deploying.sync import deploy_head, read_cursor
from orchestrator.observe.metrics import record_head_check, record_poll_error
from orchestrator.runtime.services import Services
from orchestrator.triggers.drift_checks import start_drift_checks
from orchestrator.triggers.scrubbing import start_scrubbing
from orchestrator.triggers.watchers import start_watchers

log = logging.getLogger("sluice.poller")

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, app in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], app) end
return due
"""
CLAIM_TIMEOUT = 120.0
MAX_FAILURE_BACKOFF = 600.0


def make_due(client: redis.Redis, name: str) -> None:
    """Check the app's source at the next round of any poller (a webhook arrived)."""
    client.zadd(keys.POLL_DUE, {name: 0}, xx=True)


@dataclass(frozen=True)
class CheckResult:
    app: str
    queued: Queued | None = None
    error: str | None = None


class Poller:
    def __init__(self, services: Services, concurrency: int = 16, rng: random.Random | None = None):
        self.services = services
        self.concurrency = concurrency
        self.rng = rng or random.Random()
        self._claim = services.redis.register_script(_CLAIM)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="head-check")
        self._wake = threading.Event()
        self._unfinished: set[str] = set()      # claimed, but Redis failed their check

    def register(self) -> None:
        """Schedule every polled app (now, unless already scheduled); drop the others."""
        configured = {n: a for n, a in self.services.config.apps.items() if a.source.poll_interval > 0}
        scheduled = {m.decode() for m in replies.members(self.services.redis.zrange(keys.POLL_DUE, 0, -1))}
        if stale := scheduled - configured.keys():
            self.services.redis.zrem(keys.POLL_DUE, *stale)
        now = self.services.clock.now()
        if configured:
            self.services.redis.zadd(keys.POLL_DUE, {name: now for name in configured}, nx=True)

    def tick(self) -> list[CheckResult]:
        """Claim every due source and check them concurrently."""
        now = self.services.clock.now()
        if self._unfinished:
            self.services.redis.zadd(keys.POLL_DUE, {name: now for name in self._unfinished}, xx=True)
            self._unfinished.clear()
        claimed = self._claim(keys=[keys.POLL_DUE],
                              args=[now, self.concurrency * 4, now + CLAIM_TIMEOUT])
        apps = [a.decode() for a in claimed]
        return list(self._pool.map(self._check_claimed, apps))

    def _check_claimed(self, name: str) -> CheckResult:
        try:
            return self.check(name)
        except redis.RedisError:
            self._unfinished.add(name)
            raise

    def check(self, name: str) -> CheckResult:
        app = self.services.config.apps.get(name)
        if app is None or app.source.poll_interval <= 0:
            self.services.redis.zrem(keys.POLL_DUE, name)
            return CheckResult(name, error="no longer polled")
        try:
            queued = self._check(name)
        except SluiceError as exc:
            return self._failed(name, app, str(exc))
        self.services.redis.hdel(keys.POLL_FAILURES, name)
        self._schedule(name, app.source.poll_interval * self.rng.uniform(0.9, 1.1))
        return CheckResult(name, queued=queued)

    def _check(self, name: str) -> Queued | None:
        app = self.services.config.apps[name]
        started = time.perf_counter()
        try:
            queued = deploy_head(self.services, name, "poll")
        finally:        # for GET /metrics: pollers are separate processes, so into Redis
            record_head_check(self.services.redis, app.source.type, time.perf_counter() - started)
        if queued.declined:
            return None
        log.info("%s: head at %s, %s", name, queued.revision[:12],
                 f"deployment {queued.deployment_id} queued" if queued.new else queued.reason)
        return queued

    def _failed(self, name: str, app: AppConfig, error: str) -> CheckResult:
        failures = self.services.redis.hincrby(keys.POLL_FAILURES, name, 1)
        record_poll_error(self.services.redis, app.source.type)
        delay = max(app.source.poll_interval,
                    backoff_delay(failures, app.source.poll_interval, MAX_FAILURE_BACKOFF, self.rng))
        log.warning("%s: head check failed (%d in a row, next in %.0fs): %s",
                    name, failures, delay, error)
        self._schedule(name, delay)
        return CheckResult(name, error=error)

    def _schedule(self, name: str, delay: float) -> None:
        self.services.redis.zadd(keys.POLL_DUE, {name: self.services.clock.now() + delay})

    def seconds_until_due(self) -> float:
        head = replies.scored(self.services.redis.zrange(keys.POLL_DUE, 0, 0, withscores=True))
        return max(0.0, head[0][1] - self.services.clock.now()) if head else 60.0

    def due_now(self, name: str) -> None:
        """A change notification arrived: check this source at the next round, right away."""
        self._schedule(name, 0.0)
        self._wake.set()

    def run(self, stop: threading.Event, max_wait: float = 1.0) -> None:
        self.register()
        start_watchers(self.services, stop, lambda name: read_cursor(self.services, name, False),
                       self.due_now)
        start_drift_checks(self.services, stop)
        start_scrubbing(self.services, stop)
        while not stop.is_set():
            try:
                self.tick()
                wait = min(max_wait, self.seconds_until_due())
            except redis.ConnectionError as exc:    # Redis away: keep serving, retry shortly
                log.warning("poll round failed: Redis unreachable: %s", exc)
                wait = max_wait
            except Exception:
                log.exception("poll round failed")
                wait = max_wait
            self._wake.wait(wait)
            self._wake.clear()
        self._pool.shutdown(wait=True)
