"""The deploy queue: Celery on the Redis broker (see docs/architecture.md).

Producers (dispatch, the runner's retries and hand-overs) send `sluice.deploy` by name, and
operators' tools ping and inspect workers, through the Celery app built here. The worker
process itself is `workers.celery_app`, which takes this app and adds the task module named
in TASK_MODULES, so nothing here imports the worker.
"""
from __future__ import annotations

import os
from functools import lru_cache

from celery import Celery

from orchestrator.deploying.broker import TRANSPORT

DEPLOY_TASK = "sluice.deploy"
DEPLOY_QUEUE = "deploy"
HOST_TASK = "sluice.host"           # what an app's host does (issue 19), on its own queue
HOST_VARIABLE = "SLUICE_HOST"       # the host a worker is: `sluice worker --host` sets it
QUEUED_AT = "sluice_queued_at"      # message header: unix time the message was sent
TASK_MODULES = ["workers.tasks", "workers.host_tasks"]    # imported by a worker when it starts, by name
KOMBU_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)       # kombu's default for the Redis transport

# Longer than the longest deployment, builds included (build.timeout: 15 min by default), so a
# running task is not handed out twice. A crashed worker's deployment does not wait for it:
# the reaper takes it up within about lease_ttl (deploying/reaper.py).
VISIBILITY_TIMEOUT = float(os.environ.get("SLUICE_VISIBILITY_TIMEOUT", "3600"))


def create_app(broker_url: str) -> Celery:
    app = Celery("sluice", broker=broker_url, include=TASK_MODULES)
    app.conf.update(
        broker_transport=TRANSPORT,     # kombu's, repaired: see deploying/broker.py
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=DEPLOY_QUEUE,
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


def priority_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue's messages in, one per priority step: `deploy`,
    `deploy\\x06\\x163`, ..."""
    return [queue if not step else f"{queue}{KOMBU_SEP}{step}" for step in PRIORITY_STEPS]


@lru_cache(maxsize=8)
def celery_for(broker_url: str) -> Celery:
    return create_app(broker_url)


def send_deploy(broker_url: str, app: str, deployment_id: str, attempt: int, queued_at: float,
                countdown: float | None = None) -> None:
    # QUEUED_AT: when the message was sent, for `sluice queue` (Celery records no such time)
    celery_for(broker_url).send_task(
        DEPLOY_TASK, args=[app, deployment_id, attempt], queue=DEPLOY_QUEUE, countdown=countdown,
        headers={QUEUED_AT: queued_at})


def host_queue(host: str) -> str:
    """The queue only `sluice worker --host HOST` consumes."""
    return f"{DEPLOY_QUEUE}.{host}"


def send_host(broker_url: str, action: str, app: str, host: str, deployment_id: str | None,
              token: int | None, queued_at: float) -> None:
    """Ask `host` to `switch` to a deployment's release, or to `converge` on the app's
    active one (`deployment_id`: the deployment it reverts, if any), fenced by `token`."""
    celery_for(broker_url).send_task(
        HOST_TASK, args=[action, app, host, deployment_id, token], queue=host_queue(host),
        headers={QUEUED_AT: queued_at})

