"""Celery tasks: thin; they take ids, call the runner and map errors to retries."""
from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache
from pathlib import Path

from celery import shared_task

from orchestrator.config import load_config
from orchestrator.dispatch import DEPLOY_TASK
from orchestrator.errors import TransientError
from orchestrator.services import Services
from . import runner
from .snapshots import SnapshotStore

log = logging.getLogger("sluice.worker")


@shared_task(name=DEPLOY_TASK, acks_late=True, reject_on_worker_lost=True)
def deploy(app: str, deployment_id: str, attempt: int = 1) -> str:
    ctx = context()
    try:
        outcome = runner.run(ctx, app, deployment_id, attempt)
    except TransientError as exc:
        outcome = runner.retry_or_fail(ctx, app, deployment_id, attempt, str(exc))
    except Exception as exc:  # a bug or the machine: end the deployment, keep the trace in the log
        log.exception("deployment %s of %s crashed", deployment_id, app)
        outcome = runner.retry_or_fail(ctx, app, deployment_id, attempt,
                                       f"unexpected {type(exc).__name__}: {exc}")
    log.info("deployment %s of %s: %s", deployment_id, app, outcome)
    return outcome


def context() -> runner.WorkerContext:
    """The config is read for every task, so a worker follows config changes."""
    config = load_config()
    return runner.WorkerContext(Services.build(config), _store(config.data_dir), _holder())


@lru_cache(maxsize=8)
def _store(data_dir: Path) -> SnapshotStore:
    return SnapshotStore(data_dir / "store")


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
