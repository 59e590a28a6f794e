"""How `sluice worker`'s Celery stopped, so its exit code tells a supervisor (systemd,
docker's restart policy, `sluice up`) a failure from a stop it asked for.

Celery's `worker_main` returns nothing however the worker ended: the code Celery chose (1
after an "Unrecoverable error") was lost and `sluice worker` exited 0, a clean stop to any
supervisor. Here a stop a signal asked for (SIGTERM, Ctrl-C, which Celery ends with 1) or
`celery control shutdown` is clean; any other stop with a non-zero code raises, naming the
error Celery could not recover from, taken from Celery's own log record of it. An error
Sluice raised itself (a SluiceError: the broker refused the password, deploying/broker.py)
is a known cause: raised as it is, one line without Celery's traceback. Any other keeps
Celery's traceback in the log, for the bug it is.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from celery.signals import worker_init, worker_shutting_down

from orchestrator.core.errors import PermanentError, SluiceError

CELERY_LOGGER = "celery.worker"         # where Celery's WorkController logs its end
UNRECOVERABLE = "Unrecoverable error"


class WorkerStop(logging.Filter):
    """Watches one run of Celery's worker: the worker, the signal that asked it to stop,
    the error it could not recover from."""

    def __init__(self) -> None:
        super().__init__()
        self.worker = None
        self.asked_by: str | None = None
        self.error: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.CRITICAL or not str(record.msg).startswith(UNRECOVERABLE) \
                or not record.exc_info:
            return True
        self.error = record.exc_info[1]
        return not isinstance(self.error, SluiceError)

    def raise_if_failed(self) -> None:
        """After the run: raise if it ended in failure rather than as asked."""
        code = getattr(self.worker, "exitcode", None)
        if self.asked_by or not code:
            return
        if isinstance(self.error, SluiceError):
            raise self.error
        why = f"{type(self.error).__name__}: {self.error}" if self.error else f"exit code {code}"
        raise PermanentError(f"the worker stopped on an error Celery cannot recover from: {why}")

    def _started(self, sender, **_) -> None:
        self.worker = sender

    def _asked(self, sig=None, **_) -> None:
        self.asked_by = sig or "a signal"


@contextmanager
def watching() -> Iterator[WorkerStop]:
    stop = WorkerStop()
    logger = logging.getLogger(CELERY_LOGGER)
    streams = sys.stdout, sys.stderr
    worker_init.connect(stop._started, weak=False, dispatch_uid="sluice-worker-stop")
    worker_shutting_down.connect(stop._asked, weak=False, dispatch_uid="sluice-worker-stop")
    logger.addFilter(stop)
    try:
        yield stop
    finally:
        # Celery sends these to its log while it runs: the reason printed after it is a
        # plain line of stderr, not a log record of it
        sys.stdout, sys.stderr = streams
        logger.removeFilter(stop)
        worker_init.disconnect(dispatch_uid="sluice-worker-stop")
        worker_shutting_down.disconnect(dispatch_uid="sluice-worker-stop")
