"""Celery configuration only (see DESIGN.md, "Queue = Celery on the Redis broker").

`celery -A workers.celery_app worker -Q deploy` works as well as `sluice worker`; both find
Redis from the Sluice config (SLUICE_CONFIG / SLUICE_REDIS_URL), or `celery --broker=URL`.
So does Flower: `celery -A workers.celery_app flower` (README, "Operating it").
"""
from __future__ import annotations

import os
from functools import lru_cache

from celery import Celery

# Longer than the longest deployment, so a running task is not handed out twice; a crashed
# worker's task comes back after it (plus the 1 s restore scan below).
VISIBILITY_TIMEOUT = float(os.environ.get("SLUICE_VISIBILITY_TIMEOUT", "300"))


def create_app(broker_url: str) -> Celery:
    app = Celery("sluice", broker=broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue="deploy",
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # kombu's default restore scan waits ~100 s after the timeout (FACTS.md)
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            # a worker killed while holding the restore scan's lock would otherwise stall
            # every redelivery for kombu's default 300 s
            "unacked_mutex_expire": 10,
        },
    )
    return app


@lru_cache(maxsize=8)
def celery_for(broker_url: str) -> Celery:
    return create_app(broker_url)


def _app_from_environment() -> Celery:
    from orchestrator.config import load_config
    from orchestrator.embedded_redis import redis_url
    # `celery --broker=URL -A workers.celery_app ...` (flower, inspect) sets CELERY_BROKER_URL,
    # which Celery itself prefers to any broker it is given: so no config is needed then.
    url = (os.environ.get("CELERY_BROKER_URL") or os.environ.get("SLUICE_REDIS_URL")
           or redis_url(load_config()))
    return celery_for(url)


def __getattr__(name: str):
    # Lazy, so producers that import celery_for never need a config to import this module.
    if name in ("app", "celery"):
        return _app_from_environment()
    raise AttributeError(name)
