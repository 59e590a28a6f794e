"""The `sluice` Typer app, its options (taken before or after the command) and what every
command shares: the consoles, the config's services, app names checked against the config."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from orchestrator.cli.plain_help import WholeSummaries
from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.runtime.services import Services

# Help in Click's plain layout: Rich's panels cost more to import than the interpreter's
# whole start, and `sluice --help` would pay it for boxes round the same text.
cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, cls=WholeSummaries,
                  help="Sluice: continuous deployment from Git (and more) to atomic releases.")


class LazyConsole:
    """A Rich console made at its first use, so that the commands that print nothing through
    it (and every --help) do not import Rich; `.console` is the console itself, for the Rich
    objects that draw on one (Live, Progress)."""

    def __init__(self, **options: Any):
        self._options = options
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console
            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


out = LazyConsole(soft_wrap=True)
err = LazyConsole(stderr=True, soft_wrap=True)


@cli.callback()
def _options(ctx: typer.Context,
             config: Optional[Path] = typer.Option(
                 None, "--config", "-c", help="config file (default: $SLUICE_CONFIG, else config/sluice.yaml); "
                                              "like the other options here, also taken after the command"),
             log_level: str = typer.Option("INFO", envvar="SLUICE_LOG_LEVEL",
                                           help="log level for services"),
             log_format: str = typer.Option("text", envvar="SLUICE_LOG_FORMAT",
                                            help="text, or json: one JSON object per log line")):
    from orchestrator.config.location import config_file
    from orchestrator.observe.logging_setup import FORMATS, configure
    path = config or config_file()
    ctx.obj = path.resolve()
    os.environ["SLUICE_CONFIG"] = str(ctx.obj)     # child processes read the same file
    if log_format.lower() not in FORMATS:
        raise typer.BadParameter(f"use one of: {', '.join(FORMATS)}", param_hint="--log-format")
    # child processes (`sluice up`'s worker, poller, API) log the same way
    os.environ.update(SLUICE_LOG_FORMAT=log_format.lower(), SLUICE_LOG_LEVEL=log_level.upper())
    configure(log_format, log_level)


def services_of(ctx: typer.Context) -> Services:
    from orchestrator.config.settings import load_config
    from orchestrator.runtime.services import Services
    return Services.build(load_config(ctx.obj))


def app_name(services: Services, app: str) -> str:
    if app not in services.config.apps:
        known = ", ".join(services.config.apps) or "none"
        raise ConfigError(f"unknown app {app!r} (configured: {known})")
    return app
