"""The commands about an app's files and who may reach them: import, export, credentials."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from orchestrator.cli.app import app_name, cli, out, services_of
from orchestrator.cli.plain_help import WholeSummaries
from orchestrator.cli.reporting import report
from orchestrator.core.errors import SluiceError


@cli.command("import")
def import_(ctx: typer.Context, app: str, directory: Path,
            wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end")):
    """Deploy DIRECTORY as the release of an app not on continuous deployment yet (its files
    are also committed to the app's built-in Git repository)."""
    from orchestrator.deploying.import_export import import_directory
    services = services_of(ctx)
    report(services, app, import_directory(services, app_name(services, app), directory), wait)


@cli.command()
def export(ctx: typer.Context, app: str, directory: Path):
    """Copy the app's active release into DIRECTORY (new or empty), writable."""
    from orchestrator.deploying.import_export import export_release
    services = services_of(ctx)
    release = export_release(services, app_name(services, app), directory)
    out.print(f"{app}: exported {release.name} to {directory}")


credentials_cli = typer.Typer(help="Deployment credentials for the built-in Git repository and FTP.",
                              no_args_is_help=True, rich_markup_mode=None, cls=WholeSummaries)
cli.add_typer(credentials_cli, name="credentials")


@credentials_cli.command("set")
def credentials_set(ctx: typer.Context, app: str, user: str):
    """Set the app's deployment user and password (asked for, or read from stdin; never an
    argument, which other users could see in the process list)."""
    from orchestrator.access.credentials import set_credentials
    services = services_of(ctx)
    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    set_credentials(services, app_name(services, app), user, password)
    out.print(f"{app}: deployment credentials set for user {user!r}")


@credentials_cli.command("show")
def credentials_show(ctx: typer.Context, app: str):
    """The app's deployment user and how to reach its files over Git, FTP and FTPS."""
    from orchestrator.access.credentials import credentials_of
    from orchestrator.observe import formatting
    services = services_of(ctx)
    stored = credentials_of(services, app_name(services, app))
    if stored is None:
        raise SluiceError(f"app {app!r} has no deployment credentials: "
                          f"sluice credentials set {app} USER")
    out.print(formatting.connection_details(services.config, app, stored.user), highlight=False)
