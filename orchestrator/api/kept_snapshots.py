"""Which snapshots the store keeps now, as its collection decides (retention.kept_snapshots:
kept releases, deployments not ended, the snapshots their builds started from), followed
through the feed as /api/apps is (fleet_cache.py): every append writes the app's stream and
the feed in one script, so the feed's entries since the last look name every app whose kept
snapshots may have changed; only those apps are read again (one Redis call when none moved),
and every app when the feed cannot tell. Not thread-safe: one caller at a time."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from orchestrator.core.feed_moves import FeedMoves
from orchestrator.core.projections import AppView
from orchestrator.releases.retention import kept_snapshots


class KeptSnapshots:
    def __init__(self, apps: Callable[[], Iterable[str]], views: Callable[[list[str]], list[AppView]],
                 feed_moves: Callable[[str], FeedMoves]):
        self._apps, self._views, self._feed_moves = apps, views, feed_moves
        self._seen: str | None = None       # the feed's last id when the apps were read
        self._by_app: dict[str, frozenset[str]] = {}
        self._all: frozenset[str] = frozenset()

    def now(self) -> frozenset[str]:
        """The snapshots kept, none older than the feed when this was called."""
        moves = self._feed_moves(self._seen or "0-0")
        if self._seen is not None and moves.last_id == self._seen:
            return self._all
        if self._seen is None or moves.apps is None:
            self._by_app.clear()
            moved = list(self._apps())
        else:
            moved = sorted(moves.apps)
        for view in self._views(moved):
            self._by_app[view.name] = frozenset(kept_snapshots([view]))
        self._all = frozenset().union(*self._by_app.values())
        self._seen = moves.last_id
        return self._all
