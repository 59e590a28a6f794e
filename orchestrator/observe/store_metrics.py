"""The snapshot store's health in /metrics: corrupt blobs found (and by what) and blobs the
scrub hashed, counted in `sluice:metrics:store` by whichever process found them.

  sluice_store_corrupt_blobs_total{found_by}   blobs quarantined as corrupt: by a deployment
                                               placing them, the scrub, or `sluice verify --repair`
  sluice_store_blobs_scrubbed_total            blobs the scrub hashed
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from prometheus_client.core import CounterMetricFamily

from orchestrator.core import keys, replies

log = logging.getLogger("sluice.metrics")

FOUND_BY = ("deployment", "scrub", "verify")


def record_corrupt_blobs(client: redis.Redis, found_by: str, count: int = 1) -> None:
    """Count corrupt blobs taken out of the store (never fails the caller)."""
    _add(client, f"corrupt:{found_by}", count)


def record_scrubbed(client: redis.Redis, count: int) -> None:
    _add(client, "scrubbed", count)


def _add(client: redis.Redis, field: str, count: int) -> None:
    if count:
        try:
            client.hincrby(keys.METRICS_STORE, field, count)
        except redis.RedisError as exc:
            log.debug("store figures not recorded: %s", exc)


def store_families(client: redis.Redis) -> Iterable:
    raw = replies.text_fields(replies.hash_fields(client.hgetall(keys.METRICS_STORE)))
    corrupt = CounterMetricFamily("sluice_store_corrupt_blobs",
                                  "Store blobs found corrupt and quarantined, by what found them",
                                  labels=["found_by"])
    for found_by in FOUND_BY:
        corrupt.add_metric([found_by], int(raw.get(f"corrupt:{found_by}", 0)))
    scrubbed = CounterMetricFamily("sluice_store_blobs_scrubbed", "Store blobs the scrub hashed",
                                   value=int(raw.get("scrubbed", 0)))
    return [corrupt, scrubbed]
