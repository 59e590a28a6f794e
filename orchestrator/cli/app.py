"""The `sluice` Typer app, its options (taken before or after the command) and what every
command shares: the consoles, the config's services, app names checked against the config."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.runtime.services import Services

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sluice: continuous deployment from Git (and more) to atomic releases.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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
