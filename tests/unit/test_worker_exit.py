"""How a run of Celery's worker ended, told from what Celery signals and logs (the signals and
the logger are Celery's own; the worker is a stand-in holding the exit code Celery chose)."""
from __future__ import annotations

import logging

import pytest
from celery.signals import worker_init, worker_shutting_down

from orchestrator.core.errors import ConfigError, PermanentError
from orchestrator.deploying.worker_exit import CELERY_LOGGER, watching


class Worker:
    """Celery's WorkController as far as the watch reads it."""

    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def celery_log():
    records = Records()
    logger = logging.getLogger(CELERY_LOGGER)
    logger.addHandler(records)
    yield records.records
    logger.removeHandler(records)


def end(exitcode: int, error: BaseException | None = None, sig: str | None = None):
    """As Celery ends a worker: a signal's request first, its unrecoverable error logged."""
    with watching() as stop:
        worker_init.send(sender=Worker(exitcode))
        if sig:
            worker_shutting_down.send(sender="sluice-1@host", sig=sig, how="Warm", exitcode=exitcode)
        if error:
            try:
                raise error
            except type(error):
                logging.getLogger(CELERY_LOGGER).critical("Unrecoverable error: %r", error, exc_info=True)
    return stop


def test_an_unrecoverable_error_of_unknown_cause_fails_the_run_naming_it_and_keeps_its_traceback(celery_log):
    stop = end(1, AttributeError("'NoneType' object has no attribute 'hostname'"))

    with pytest.raises(PermanentError, match="cannot recover from: AttributeError: 'NoneType' object"):
        stop.raise_if_failed()
    assert [r.exc_info is not None for r in celery_log] == [True]


def test_an_error_sluice_raised_fails_the_run_as_itself_without_celerys_traceback(celery_log):
    refused = ConfigError("Redis at redis://127.0.0.1:1/0 refused the password (redis_url / SLUICE_REDIS_URL)")
    stop = end(1, refused)

    with pytest.raises(ConfigError) as raised:
        stop.raise_if_failed()
    assert raised.value is refused and celery_log == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_a_signal_asked_for_is_clean_whatever_code_celery_chose(sig):
    end(1, sig=sig).raise_if_failed()


def test_a_stop_with_code_zero_and_no_signal_is_clean():
    end(0).raise_if_failed()


def test_a_non_zero_stop_without_an_error_logged_names_its_exit_code():
    with pytest.raises(PermanentError, match="exit code 1"):
        end(1).raise_if_failed()


def test_after_the_run_celerys_signals_and_log_are_no_longer_watched(celery_log):
    stop = end(0)
    worker_shutting_down.send(sender="sluice-1@host", sig="SIGTERM", how="Warm", exitcode=0)
    logging.getLogger(CELERY_LOGGER).critical("Unrecoverable error: %r", ConfigError("x"),
                                              exc_info=(ConfigError, ConfigError("x"), None))

    assert stop.asked_by is None and stop.error is None and len(celery_log) == 1
