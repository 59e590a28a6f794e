"""Change notifications for sources that offer them (Dropbox's `list_folder/longpoll`): one
thread per such app blocks on the notification and, when it fires, makes the app due for a
head check at once and wakes the poller. The head check itself stays the poller's job, so
claims, cursors and backoff work the same for notified and polled sources."""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from orchestrator.core.backoff import backoff_delay
from orchestrator.core.errors import SluiceError
from orchestrator.runtime.services import Services
from orchestrator.sources import source_for
from orchestrator.sources.base import NotifyingSource

log = logging.getLogger("sluice.watchers")
MAX_ERROR_BACKOFF = 300.0


def notifying_apps(services: Services) -> list[str]:
    return [name for name, app in services.config.apps.items()
            if getattr(app.source, "longpoll", False) and app.source.poll_interval > 0]


def start_watchers(services: Services, stop: threading.Event, cursor_of: Callable[[str], str | None],
                   due_now: Callable[[str], None]) -> list[threading.Thread]:
    threads = []
    for name in notifying_apps(services):
        thread = threading.Thread(target=watch, args=(services, name, stop, cursor_of, due_now),
                                  name=f"watch-{name}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def watch(services: Services, name: str, stop: threading.Event,
          cursor_of: Callable[[str], str | None], due_now: Callable[[str], None],
          rng: random.Random | None = None) -> None:
    source = source_for(services.config.apps[name], services.config.data_dir)
    if not isinstance(source, NotifyingSource):     # notifying_apps chose it by its settings
        raise TypeError(f"{name}: {source.describe()} sends no change notifications")
    failures, rng = 0, rng or random.Random()
    while not stop.is_set():
        cursor = cursor_of(name)
        if cursor is None:              # not listed yet: the first head check will say
            stop.wait(1.0)
            continue
        try:
            pause = source.wait_for_change(cursor)
            failures = 0
        except SluiceError as exc:
            failures += 1
            pause = backoff_delay(failures, 2.0, MAX_ERROR_BACKOFF, rng)
            log.warning("%s: change notification failed (%d in a row, retry in %.0fs): %s",
                        name, failures, pause, exc)
        if pause < 0:
            due_now(name)
            _until_moved_on(name, cursor, stop, cursor_of)
        elif pause:
            stop.wait(pause)


def _until_moved_on(name: str, cursor: str, stop: threading.Event,
                    cursor_of: Callable[[str], str | None], limit: float = 10.0) -> None:
    """Until the head check has taken the change (a longpoll on the old cursor would only
    fire again at once), or `limit` seconds if it fails."""
    waited = 0.0
    while cursor_of(name) == cursor and waited < limit and not stop.is_set():
        stop.wait(0.05)
        waited += 0.05
