"""The parts every process builds from a config: Redis client, event store, projections."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import redis

from orchestrator.config.settings import SluiceConfig
from orchestrator.core.clock import Clock, SystemClock
from orchestrator.core.event_archive import EventArchive
from orchestrator.core.event_store import EventStore
from orchestrator.core.projections import Projections
from orchestrator.runtime.embedded_redis import redis_url


@dataclass
class Services:
    config: SluiceConfig
    clock: Clock

    @classmethod
    def build(cls, config: SluiceConfig, clock: Clock | None = None) -> Services:
        return cls(config, clock or SystemClock())

    @cached_property
    def redis_url(self) -> str:
        return redis_url(self.config)

    @cached_property
    def redis(self) -> redis.Redis:
        return client_for(self.redis_url)

    @cached_property
    def store(self) -> EventStore:
        return EventStore(self.redis, EventArchive(self.config.data_dir / "archive"),
                          keep=self.config.events.keep_in_redis)

    @cached_property
    def projections(self) -> Projections:
        return Projections(self.store, cache=self.redis)


class FollowedServices:
    """`()`: the Services of the config `config()` gives now; the same object (its Redis
    pool, its cached parts) for as long as that config is the same object."""

    def __init__(self, config: Callable[[], SluiceConfig], clock: Clock | None = None):
        self.config, self.clock = config, clock
        self._services: Services | None = None

    def __call__(self) -> Services:
        config = self.config()
        if self._services is None or self._services.config is not config:
            self._services = Services.build(config, self.clock)
        return self._services


@lru_cache(maxsize=16)
def client_for(url: str) -> redis.Redis:
    """One connection pool per Redis URL per process."""
    return redis.Redis.from_url(url, health_check_interval=30)
