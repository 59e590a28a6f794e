"""`sluice worker` (and `sluice up`'s worker): Celery's worker on the deploy queue, saying
what Sluice says rather than what Celery says.

Celery's banner (its ASCII art, a config dump, the task list) is left out (`--quiet`), and
so is its warning about running as root: that warning is for a worker that accepts pickled
messages, which run code as they are read; this app accepts JSON only, and for one that did
accept pickle Celery refuses to start as root rather than warn. Instead one line says the
worker is ready. Celery's own log lines stay (`... ready.`, a task's `succeeded in`), and so
does every error.

A stop on an error Celery cannot recover from exits non-zero with one line saying why, a stop
a signal asked for 0 (deploying/worker_exit.py).

Once ready, the worker's main process also runs the reaper (deploying/reaper.py): a
deployment whose worker was lost is picked up again within about lease_ttl, not after the
broker's visibility timeout. So does a worker started as `celery -A workers.celery_app
worker` (`reap_once_ready`, connected by that module).
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable
from functools import partial

from celery.exceptions import SecurityWarning
from celery.signals import worker_ready

from orchestrator.config.live import LiveConfig
from orchestrator.core.errors import ConfigError
from orchestrator.deploying.reaper import start_reaper
from orchestrator.deploying.task_queue import DEPLOY_QUEUE, HOST_VARIABLE, celery_for, host_queue, send_host
from orchestrator.deploying.worker_exit import watching
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.worker")
ROOT_WARNING = "You're running the worker with superuser privileges"


def run_worker(services: Services, concurrency: int, host: str | None = None) -> None:
    """`host`: a host's worker (issue 19), on that host's queue only, converging its apps
    now and then; else a worker of the deploy queue, with the reaper."""
    warnings.filterwarnings("ignore", message=ROOT_WARNING, category=SecurityWarning)
    worker_ready.connect(_say_ready, weak=False, dispatch_uid="sluice-worker-ready")
    if host is None:
        reap_once_ready(lambda: services)
    else:
        os.environ[HOST_VARIABLE] = host       # the pool's processes know which host they are
        converge_once_ready(services, host)
    with watching() as stop:
        celery_for(services.redis_url).worker_main(
            ["--quiet", "worker", "-Q", DEPLOY_QUEUE if host is None else host_queue(host),
             f"--concurrency={concurrency}", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", f"--hostname=sluice-{os.getpid()}@%h"])
    stop.raise_if_failed()


def reap_once_ready(services: Callable[[], Services]) -> None:
    """Run the reaper in this process once Celery's worker in it is ready (one reaper, however
    often this is called)."""
    worker_ready.connect(partial(_reap, services), weak=False, dispatch_uid="sluice-reaper")


def _reap(services: Callable[[], Services], **_) -> None:
    try:
        found = services()
    except ConfigError as exc:      # e.g. `celery --broker=URL` with no Sluice config
        log.warning("no reaper in this worker (deployments of a lost worker wait for the "
                    "broker's visibility timeout): %s", exc)
        return
    # a daemon: it ends with the process; it follows config changes as the tasks do (an
    # instance of its own: a lock this thread holds must not be copied into a forked child)
    start_reaper(found, threading.Event(), config=LiveConfig().current)


def converge_once_ready(services: Services, host: str) -> None:
    """Once ready, and every worker.converge_interval after, ask this host (on its own queue,
    so that it runs between its other tasks) to bring each of its apps in step with the
    app's active deployment: a host back from an outage, or just added to `hosts`, catches
    up by itself (and a host added to an app's `hosts` in the config, re-read each time)."""
    def loop(**_) -> None:
        current, stop = LiveConfig().current, threading.Event()    # it follows config changes
        while True:
            try:
                config = current()
            except ConfigError as exc:
                log.error("host %s: not converging while the config does not read: %s", host, exc)
                stop.wait(30)
                continue
            for app in [n for n, a in config.apps.items() if host in a.hosts]:
                send_host(services.redis_url, "converge", app, host, None, None, services.clock.now())
            if stop.wait(config.worker.converge_interval):
                return
    worker_ready.connect(lambda **_: threading.Thread(target=loop, daemon=True, name="converge").start(),
                         weak=False, dispatch_uid="sluice-converge")


def _say_ready(sender, **_) -> None:
    """(Celery's worker_ready; sender: the worker's consumer)"""
    queues = ", ".join(sorted(q.name for q in sender.task_consumer.queues))
    log.info("worker ready: queue %s, concurrency %d", queues, sender.pool.num_processes)
