"""`sluice apps` the short way: from the summary of the config the last full read kept
(cli/fleet_summary.py) and the apps' views as Redis caches them, read in one round trip by
a connection of its own (core/light_redis.py), printed as the long way prints them
(observe/fleet_table.py) — with neither Typer, pydantic, YAML, redis-py nor the events
imported, so that it starts in under four times the interpreter's start (bench/scale_cli.py).

It goes the short way only when it is sure to show what the long way would; at the first
doubt it steps aside and `sluice apps` runs as any command does, which reports what is
wrong (a bad option, a config that does not read, Redis out of reach) and keeps a new
summary: options other than --limit/-n, --all and --config/-c (--help among them); no
summary that still holds; a view not cached, or events recorded since it was.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from orchestrator.cli.fleet_summary import FleetSummary, kept
from orchestrator.config.location import config_file
from orchestrator.core import keys
from orchestrator.core.app_views import AppView, decoded_view
from orchestrator.core.light_redis import LightRedis, RedisReplyError
from orchestrator.observe.fleet_pages import CLI_PAGE, FleetPage, fleet_page
from orchestrator.observe.fleet_table import fleet_table
from orchestrator.observe.text_columns import terminal_width

LOG_FORMATS = ("text", "json")      # what the long way's --log-format (and its variable) takes


@dataclass(frozen=True)
class Asked:
    config: Path | None
    limit: int | None       # None: every app


def shown(args: list[str], env: Mapping[str, str] = os.environ, out: TextIO | None = None) -> bool:
    """Whether `args` asked for `sluice apps` and it was shown the short way."""
    asked = _asked(args)
    if asked is None or env.get("SLUICE_LOG_FORMAT", "text").lower() not in LOG_FORMATS:
        return False
    summary = kept((asked.config or config_file(env)).resolve(), env)
    url = summary.redis_address(env) if summary else None
    if summary is None or url is None:
        return False
    page = fleet_page([app.name for app in summary.apps], asked.limit)
    try:
        redis = LightRedis.connect(url)
        if redis is None:
            return False
        with redis:
            views = _views(redis, page.names)
    except (OSError, RedisReplyError):
        return False
    if views is None:
        return False
    (out or sys.stdout).write(apps_text(summary, page, views, asked.limit) + "\n")
    return True


def apps_text(summary: FleetSummary, page: FleetPage, views: Mapping[str, AppView], limit: int | None) -> str:
    """What `sluice apps` prints, either way."""
    wanted = set(page.names)
    caption = f"the first {limit} of {page.total}: --limit N or --all for more" if page.next_after else None
    return fleet_table([app for app in summary.apps if app.name in wanted], views, caption, terminal_width())


def _asked(args: list[str]) -> Asked | None:
    """`apps` and the options the short way knows, else None."""
    config, limit, every, rest = None, CLI_PAGE, False, iter(args)
    command = None
    for word in rest:
        name, _, value = word.partition("=") if word.startswith("--") else (word[:2], "", word[2:])
        if word == "apps" and command is None:
            command = word
        elif word == "--all":
            every = True
        elif name in ("--config", "-c", "--limit", "-n") and word.startswith("-"):
            value = value or next(rest, "")
            if not value:
                return None
            if name in ("--config", "-c"):
                config = Path(value)
            elif not value.isdigit() or int(value) < 1:
                return None
            else:
                limit = int(value)
        else:
            return None
    return Asked(config, None if every else limit) if command else None


def _views(redis: LightRedis, names: list[str]) -> dict[str, AppView] | None:
    """The apps' views as cached, if each holds every event its app has recorded."""
    if not names:
        return {}
    cached = redis.pipeline([("MGET", *[keys.app_projection(n) for n in names])])[0]
    views: dict[str, AppView] = {}
    for name, raw in zip(names, cached):
        view = decoded_view(raw) if raw else AppView(name=name)
        if view is None:
            return None
        views[name] = view
    since = redis.pipeline([("XRANGE", keys.app_events(n), f"({v.last_id}" if v.last_id else "-", "+", "COUNT", "1")
                            for n, v in views.items()])
    return None if any(since) else views
