"""A real notifier for the tests: app `hello` deploying a git repository with a
webhook channel to a local receiver, and `Notifier.run` in a thread of the test, stopped (its
entries left as a killed notifier leaves them) when the test is done with it."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestrator.notifying.notifier import Notifier
from orchestrator.notifying.outbox import Outbox
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, git_app


def notified_app(workspace, url: str, events: list[str] | None = None, **settings) -> tuple:
    """(repo, services): `hello` tells a webhook at `url` of `events` (the default ones if
    None); a minute between tries; more top-level `settings` as given."""
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    channel = {"type": "webhook", "url": url, **({"events": events} if events else {})}
    services = workspace.configure(
        {"hello": {**git_app(repo, workspace.target("hello"), poll_interval="1h"), "notify": [channel]}},
        **{"notifier": {"backoff": "60s"}, **settings})
    return repo, services


@contextmanager
def notifier_running(services: Services, consumer: str = "test-notifier",
                     wait: Callable[[float], bool] | None = None) -> Iterator[Notifier]:
    """`Notifier.run` in a thread until the block ends; `wait` stands for its waits between
    tries (True: stopped)."""
    # The group exists before the test's first event: a notifier starting later skips what
    # came before it.
    Outbox(services.redis, consumer).ensure_group()
    notifier, stop = Notifier(services, consumer, wait=wait), threading.Event()
    thread = threading.Thread(target=notifier.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield notifier
    finally:
        stop.set()
        thread.join(30)
