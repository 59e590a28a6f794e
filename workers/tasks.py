"""Celery tasks: thin; they take ids, call the runner and map errors to retries."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
from functools import lru_cache
from pathlib import Path

import redis
from celery import shared_task
from celery.signals import worker_init

from orchestrator.config.live import LiveConfig
from orchestrator.core.errors import ConfigError, TransientError
from orchestrator.core.lease import LeaseBusy
from orchestrator.deploying.dispatch import enqueue
from orchestrator.deploying.task_queue import DEPLOY_TASK, VISIBILITY_TIMEOUT
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.services import FollowedServices, Services, client_for
from workers import runner

log = logging.getLogger("sluice.worker")


# Not our retries (those are events with a policy): Celery's own, for when the deployment
# cannot even be recorded — config unreadable, Redis unreachable — so nothing is left stuck.
INFRA_RETRY_DELAY = 5.0
LEASE_WAIT = (1.0, 3.0)     # seconds between looks at a busy lease, as a fallback to hand-over
REDIS_LOOK_INTERVAL = 0.5   # seconds between looks at a Redis that went away


@shared_task(name=DEPLOY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=None)
def deploy(self, app: str, deployment_id: str, attempt: int = 1) -> str:
    try:
        ctx = context()
        outcome = _run(ctx, app, deployment_id, attempt)
    except (ConfigError, redis.RedisError) as exc:
        log.error("deployment %s of %s cannot run yet: %s", deployment_id, app, exc)
        if isinstance(exc, redis.ConnectionError):
            _until_redis_answers(self.app.conf.broker_url)
        raise self.retry(exc=exc, countdown=INFRA_RETRY_DELAY) from exc
    log.info("deployment %s of %s: %s", deployment_id, app, outcome)
    return outcome


def _run(ctx: runner.WorkerContext, app: str, deployment_id: str, attempt: int) -> str:
    try:
        return runner.run(ctx, app, deployment_id, attempt)
    except (ConfigError, redis.RedisError):
        raise
    except LeaseBusy:       # another deployment of the app runs; it hands over when it ends
        enqueue(ctx.services, app, deployment_id, attempt, countdown=random.uniform(*LEASE_WAIT))
        return "waiting for the app's lease"
    except TransientError as exc:
        return runner.retry_or_fail(ctx, app, deployment_id, attempt, str(exc))
    except Exception as exc:  # a bug or the machine: end the deployment, keep the trace in the log
        log.exception("deployment %s of %s crashed", deployment_id, app)
        return runner.retry_or_fail(ctx, app, deployment_id, attempt,
                                    f"unexpected {type(exc).__name__}: {exc}")


def _until_redis_answers(url: str) -> None:
    """Celery's retry is a message published to this same Redis: sent while Redis is away,
    it fails, Celery rejects the task without requeueing it, and the deployment would stay
    `building` for ever. So wait for Redis first (the worker can do nothing without it),
    at most as long as the broker waits before handing an unacknowledged task out again."""
    deadline = time.monotonic() + VISIBILITY_TIMEOUT
    client = client_for(url)
    while time.monotonic() < deadline:
        try:
            client.ping()
            return
        except redis.RedisError:
            time.sleep(REDIS_LOOK_INTERVAL)


# The config is read once per process and again when the file changes (config/live.py):
# a worker follows config changes, and a task costs a stat, not a parse of every app.
_services = FollowedServices(LiveConfig().current)


@worker_init.connect(weak=False, dispatch_uid="sluice-config-before-fork")
def _read_config_before_the_pool_forks(**_) -> None:
    """Every pool process then starts from the config the worker started with, parsed once:
    a pool process that took its first task after the file broke would otherwise have no
    good config to fall back on."""
    with contextlib.suppress(ConfigError):
        _services()


def current_services() -> Services:
    """This process's services, of the config as it is now."""
    return _services()


def context() -> runner.WorkerContext:
    services = _services()
    return runner.WorkerContext(services, store_at(services.config.data_dir), _holder())


@lru_cache(maxsize=8)
def store_at(data_dir: Path) -> SnapshotStore:
    return SnapshotStore(data_dir / "store")


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
