"""The last few pages of `/api/apps` as sent, each with the feed's last entry id when it was
read: a page's views change only by an event appended to an app's stream, and every append
writes the feed too (one Lua script), so while the feed's last id is the same the page is
too. A request then costs one Redis call, however many apps the page holds and however many
clients ask at once; an event since, or another page, and the page is read again."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

PAGES = 16      # pages kept (a few clients paging through a fleet of thousands)


class FleetCache:
    def __init__(self, feed_last_id: Callable[[], str], pages: int = PAGES):
        self._feed_last_id = feed_last_id
        self._pages: OrderedDict[tuple[str, ...], tuple[str, bytes]] = OrderedDict()
        self._size = pages
        self._lock = threading.Lock()

    def page(self, names: list[str], read: Callable[[list[str]], bytes]) -> bytes:
        """The page of these apps: kept, or `read(names)` (what is read is never older than
        the feed when the request came)."""
        key, seen = tuple(names), self._feed_last_id()
        with self._lock:
            kept = self._pages.get(key)
            if kept and kept[0] == seen:
                self._pages.move_to_end(key)
                return kept[1]
        body = read(names)
        with self._lock:
            self._pages[key] = (seen, body)
            self._pages.move_to_end(key)
            while len(self._pages) > self._size:
                self._pages.popitem(last=False)
        return body
