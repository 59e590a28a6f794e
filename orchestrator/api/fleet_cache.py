"""`/api/apps` as last sent: each app's JSON with the feed's last id when it was read, and the
last few pages put together from them. Every append writes the app's stream and the feed in
one script, so the feed's entries since that id name every app that moved (core/feed_moves.py):
a request asks the feed which (one Redis call), reads again only those apps and splices their
JSON into the pages; the feed's window no longer holding the id (or a flood since), every app
is read again. Requests take turns, so those that come while one reads find what it read."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from orchestrator.core.feed_moves import FeedMoves

PAGES = 16      # pages kept (a few clients paging through a fleet of thousands)


class FleetCache:
    def __init__(self, feed_moves: Callable[[str], FeedMoves], pages: int = PAGES):
        self._feed_moves = feed_moves
        self._seen = "0-0"                      # every app's JSON kept was read after it
        self._apps: dict[str, bytes] = {}
        self._pages: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._size = pages
        self._lock = threading.Lock()

    def page(self, names: list[str], read: Callable[[list[str]], list[bytes]]) -> bytes:
        """The JSON array of these apps, none older than the feed when the request came;
        `read(apps)` gives each app's JSON."""
        key = tuple(names)
        with self._lock:
            self._forget_moved()
            body = self._pages.get(key)
            if body is None:
                missing = [name for name in names if name not in self._apps]
                if missing:
                    self._apps.update(zip(missing, read(missing)))
                body = self._pages[key] = b"[" + b",".join(self._apps[name] for name in names) + b"]"
            self._pages.move_to_end(key)
            while len(self._pages) > self._size:
                self._pages.popitem(last=False)
            return body

    def _forget_moved(self) -> None:
        moves = self._feed_moves(self._seen)
        if moves.last_id == self._seen:
            return
        if moves.apps is None:
            self._apps.clear()
            self._pages.clear()
        else:
            for app in moves.apps:
                self._apps.pop(app, None)
            for key in [k for k in self._pages if not moves.apps.isdisjoint(k)]:
                del self._pages[key]
        self._seen = moves.last_id
