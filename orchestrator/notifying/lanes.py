"""Work kept in order per app, spread over a few threads: each app's entries are handled one
after another, in the order they came, by whichever thread is free; different apps at once.
A slow receiver of one app holds up that app's later notifications (their order matters: a
commit status must not go back from success to pending), never another app's."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lanes(Generic[T]):
    def __init__(self, handle: Callable[[str, T], None], threads: int):
        self._handle = handle
        self._waiting: dict[str, deque[T]] = {}
        self._ready: deque[str] = deque()           # apps with work and no thread on them
        self._changed = threading.Condition()
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"notify-{n}", daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def put(self, app: str, item: T) -> None:
        with self._changed:
            lane = self._waiting.get(app)
            if lane is None:
                self._waiting[app] = deque([item])
                self._ready.append(app)
                self._changed.notify()
            else:
                lane.append(item)

    def waiting(self) -> int:
        with self._changed:
            return sum(len(lane) for lane in self._waiting.values())

    def stop(self, timeout: float = 10.0) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._ready and not self._stopped:
                    self._changed.wait()
                if self._stopped:
                    return
                app = self._ready.popleft()
                item = self._waiting[app][0]
            try:
                self._handle(app, item)
            finally:
                self._next(app)

    def _next(self, app: str) -> None:
        with self._changed:
            lane = self._waiting[app]
            lane.popleft()
            if lane:
                self._ready.append(app)
                self._changed.notify()
            else:
                del self._waiting[app]
