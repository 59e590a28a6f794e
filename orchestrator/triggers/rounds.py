"""Work a poller repeats in a thread of its own (drift checks, the store's scrub): rounds until
told to stop, a failed round logged and tried again later, never the end of the thread."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

REDIS_AWAY_WAIT = 1.0


def repeat(what: str, round_: Callable[[], float], stop: threading.Event, log: logging.Logger,
           after_failure: Callable[[], float], first_wait: float = 0.0) -> None:
    """Run `round_` until `stop`, waiting the seconds it returns before the next; after a
    failure, `after_failure()` seconds (REDIS_AWAY_WAIT while Redis is away)."""
    wait = first_wait
    while not stop.wait(wait):
        try:
            wait = round_()
        except redis.ConnectionError as exc:
            log.warning("%s: Redis unreachable: %s", what, exc)
            wait = REDIS_AWAY_WAIT
        except Exception:
            log.exception("%s round failed", what)
            wait = after_failure()


def start_rounds(name: str, target: Callable[[threading.Event], None],
                 stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=target, args=(stop,), daemon=True, name=name)
    thread.start()
    return thread
