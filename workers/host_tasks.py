"""The host task (issue 19): what an app's host does, on the queue only its worker consumes
(`sluice worker --host NAME`: deploy.NAME). Thin, as the deploy task is: it takes ids and
calls deploying/host_deploy.py."""
from __future__ import annotations

import logging
import os
from functools import lru_cache

import redis
from celery import shared_task

from orchestrator.core.errors import ConfigError
from orchestrator.deploying.host_deploy import HostContext, converge_here, switch_here
from orchestrator.deploying.task_queue import HOST_TASK, HOST_VARIABLE
from orchestrator.releases.remote_store import RemoteStore
from orchestrator.runtime.services import Services
from workers.tasks import INFRA_RETRY_DELAY, current_services, store_at

log = logging.getLogger("sluice.host")


@shared_task(name=HOST_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def host_task(self, action: str, app: str, host: str, deployment_id: str | None, token: int | None) -> str:
    try:
        ctx = host_context()
        if ctx.host != host:
            outcome = f"nothing done: this worker is host {ctx.host!r}, not {host!r}"
        elif action == "switch" and deployment_id and token is not None:
            outcome = switch_here(ctx, app, deployment_id, token)
        else:       # revert (a deployment, under its rollout's token) or converge
            outcome = converge_here(ctx, app, deployment_id if action == "revert" else None, token)
    except (ConfigError, redis.RedisError) as exc:
        log.error("%s on %s: %s cannot run yet: %s", app, host, action, exc)
        raise self.retry(exc=exc, countdown=INFRA_RETRY_DELAY) from exc
    log.info("%s on %s: %s: %s", app, host, action, outcome, extra={"app": app})
    return outcome


def host_context() -> HostContext:
    host = os.environ.get(HOST_VARIABLE, "")
    if not host:
        raise ConfigError(f"a host task reached a worker started without --host ({HOST_VARIABLE} unset)")
    services = current_services()
    return HostContext(services, store_at(services.config.data_dir), _remote(*store_access(services)), host)


def store_access(services: Services) -> tuple[str, str]:
    """Where the API's store is, and the worker token."""
    config = services.config
    if config.api.worker_token is None:
        raise ConfigError("api.worker_token is not set: a host's worker fetches snapshots from the API with it")
    return config.worker.store_url or f"http://{config.api.listen}", str(config.api.worker_token)


@lru_cache(maxsize=4)
def _remote(url: str, token: str) -> RemoteStore:
    return RemoteStore(url, token)
