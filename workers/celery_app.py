"""The worker process's Celery app (see docs/architecture.md, "The deploy queue").

`celery -A workers.celery_app worker -Q deploy` works as well as `sluice worker`; both find
Redis from the Sluice config (SLUICE_CONFIG / SLUICE_REDIS_URL), or `celery --broker=URL`.
So does Flower: `celery -A workers.celery_app flower` (docs/operating.md).
The app's configuration is orchestrator.deploying.task_queue's, shared with the producers.
A worker started this way runs the reaper too, as `sluice worker` does, once it is ready.
"""
from __future__ import annotations

import os

from celery import Celery

from orchestrator.config.settings import load_config
from orchestrator.deploying.task_queue import celery_for
from orchestrator.deploying.worker_main import reap_once_ready
from orchestrator.runtime.embedded_redis import redis_url
from orchestrator.runtime.services import Services


def _app_from_environment() -> Celery:
    # `celery --broker=URL -A workers.celery_app ...` (flower, inspect) sets CELERY_BROKER_URL,
    # which Celery itself prefers to any broker it is given: so no config is needed then.
    url = (os.environ.get("CELERY_BROKER_URL") or os.environ.get("SLUICE_REDIS_URL")
           or redis_url(load_config()))
    reap_once_ready(lambda: Services.build(load_config()))
    return celery_for(url)


def __getattr__(name: str) -> Celery:
    # Lazy, so importing this module never needs a config.
    if name in ("app", "celery"):
        return _app_from_environment()
    raise AttributeError(name)
