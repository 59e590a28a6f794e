"""`sluice worker` (and `sluice up`'s worker): Celery's worker on the deploy queue, saying
what Sluice says rather than what Celery says.

Celery's banner (its ASCII art, a config dump, the task list) is left out (`--quiet`), and
so is its warning about running as root: that warning is for a worker that accepts pickled
messages, which run code as they are read; this app accepts JSON only, and for one that did
accept pickle Celery refuses to start as root rather than warn. Instead one line says the
worker is ready. Celery's own log lines stay (`... ready.`, a task's `succeeded in`), and so
does every error.
"""
from __future__ import annotations

import logging
import os
import warnings

from celery.exceptions import SecurityWarning
from celery.signals import worker_ready

from orchestrator.deploying.task_queue import DEPLOY_QUEUE, celery_for

log = logging.getLogger("sluice.worker")
ROOT_WARNING = "You're running the worker with superuser privileges"


def run_worker(broker_url: str, concurrency: int) -> None:
    warnings.filterwarnings("ignore", message=ROOT_WARNING, category=SecurityWarning)
    worker_ready.connect(_say_ready, weak=False, dispatch_uid="sluice-worker-ready")
    celery_for(broker_url).worker_main(
        ["--quiet", "worker", "-Q", DEPLOY_QUEUE, f"--concurrency={concurrency}", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", f"--hostname=sluice-{os.getpid()}@%h"])


def _say_ready(sender, **_) -> None:
    """(Celery's worker_ready; sender: the worker's consumer)"""
    queues = ", ".join(sorted(q.name for q in sender.task_consumer.queues))
    log.info("worker ready: queue %s, concurrency %d", queues, sender.pool.num_processes)
