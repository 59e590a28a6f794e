"""The fleet a page at a time, for `/api/apps` and `sluice apps`: the configured apps in the
config's order, at most `limit` of them after the app named `after`. A fleet smaller than a
page is shown whole, as it always was."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.core.errors import NotFound

API_PAGE = 500          # apps per /api/apps page unless asked
API_MAX_PAGE = 5000
CLI_PAGE = 100          # rows `sluice apps` prints unless asked (--limit, --all)


@dataclass(frozen=True)
class FleetPage:
    names: list[str]
    total: int
    next_after: str | None      # the page's last app, when more follow it


def fleet_page(apps: Iterable[str], limit: int | None, after: str | None = None) -> FleetPage:
    """`limit` None: every app after `after`. An `after` not configured is NotFound (it may
    have left the config between two pages: start again)."""
    names = list(apps)
    start = 0
    if after is not None:
        if after not in names:
            raise NotFound(f"no app {after!r} to start after: it is not configured (now)")
        start = names.index(after) + 1
    end = len(names) if limit is None else min(start + limit, len(names))
    page = names[start:end]
    return FleetPage(page, len(names), page[-1] if page and end < len(names) else None)
