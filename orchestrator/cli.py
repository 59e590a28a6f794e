"""The `sluice` command: thin; it parses, calls services and presents."""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import redis
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from orchestrator.config.settings import DEFAULT_CONFIG, load_config
from orchestrator.core import keys
from orchestrator.core.errors import ConfigError, SluiceError
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.observe import formatting
from orchestrator.runtime.services import Services

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sluice: continuous deployment from Git (and more) to atomic releases.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@cli.callback()
def _options(ctx: typer.Context,
             config: Optional[Path] = typer.Option(None, "--config", "-c",
                                                   help="config file [default: $SLUICE_CONFIG or config/sluice.yaml]; "
                                                        "like the other options here, also after the command"),
             log_level: str = typer.Option("INFO", envvar="SLUICE_LOG_LEVEL",
                                           help="log level for services"),
             log_format: str = typer.Option("text", envvar="SLUICE_LOG_FORMAT",
                                            help="text, or json: one JSON object per log line")):
    from orchestrator.observe.logging_setup import FORMATS, configure
    path = config or Path(os.environ.get("SLUICE_CONFIG") or DEFAULT_CONFIG)
    ctx.obj = path.resolve()
    os.environ["SLUICE_CONFIG"] = str(ctx.obj)     # child processes read the same file
    if log_format.lower() not in FORMATS:
        raise typer.BadParameter(f"use one of: {', '.join(FORMATS)}", param_hint="--log-format")
    # child processes (`sluice up`'s worker, poller, API) log the same way
    os.environ.update(SLUICE_LOG_FORMAT=log_format.lower(), SLUICE_LOG_LEVEL=log_level.upper())
    configure(log_format, log_level)


def _services(ctx: typer.Context) -> Services:
    return Services.build(load_config(ctx.obj))


def _app_name(services: Services, app: str) -> str:
    if app not in services.config.apps:
        known = ", ".join(services.config.apps) or "none"
        raise ConfigError(f"unknown app {app!r} (configured: {known})")
    return app


@cli.command("check-config")
def check_config(ctx: typer.Context):
    """Validate the configuration without starting anything."""
    config = load_config(ctx.obj)
    out.print(f"{ctx.obj}: OK, {len(config.apps)} app(s), data_dir {config.data_dir}")
    for name, app in config.apps.items():
        out.print(f"  {name}: {app.source.describe()} -> {app.target}")


@cli.command()
def up(ctx: typer.Context):
    """Run everything: embedded Redis (unless redis_url is set), a worker and a poller."""
    from orchestrator.runtime.supervisor import Supervisor
    config = load_config(ctx.obj)
    for name, app in config.apps.items():
        out.print(f"watching {name}: {app.source.describe()} every "
                  f"{app.source.poll_interval:g}s -> {app.target}")
    raise typer.Exit(Supervisor(config, ctx.obj, say=out.print).run())


@cli.command()
def worker(ctx: typer.Context, concurrency: int = typer.Option(1, help="parallel deployments")):
    """Run a deploy worker (a Celery worker on the `deploy` queue)."""
    from orchestrator.deploying.worker_main import run_worker
    run_worker(_services(ctx).redis_url, concurrency)


@cli.command()
def poller(ctx: typer.Context, concurrency: int = typer.Option(16, help="head checks at once")):
    """Run the poller: head checks of due sources, deployments on change."""
    import signal

    from orchestrator.triggers.poller import Poller
    services = _services(ctx)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("sluice.poller").info("polling %d app(s)", len(services.config.apps))
    Poller(services, concurrency=concurrency).run(stop)


@cli.command()
def api(ctx: typer.Context):
    """Run the HTTP API (webhook receivers) on api.listen."""
    import uvicorn

    from orchestrator.api import create_app
    services = _services(ctx)
    listen = services.config.api
    # log_config=None: uvicorn's records go through Sluice's logging (--log-format); open
    # event streams (GET /api/events) never end by themselves, so shutdown cuts them after 5 s
    uvicorn.run(create_app(services), host=listen.host, port=listen.port, log_level="info",
                log_config=None, timeout_graceful_shutdown=5)


@cli.command()
def apps(ctx: typer.Context):
    """The configured apps and what is live."""
    services = _services(ctx)
    views = {name: services.projections.app(name) for name in services.config.apps}
    out.print(formatting.apps_table(services.config, views))


@cli.command()
def deployments(ctx: typer.Context, app: str,
                as_json: bool = typer.Option(False, "--json", help="a JSON array, newest first")):
    """An app's deployment history, newest first."""
    services = _services(ctx)
    view = services.projections.history(_app_name(services, app))
    if as_json:
        print(json.dumps([formatting.deployment_json(view, d) for d in view.history()], indent=2))
    else:
        out.print(formatting.deployments_table(view))


@cli.command()
def events(ctx: typer.Context, app: Optional[str] = typer.Argument(None),
           follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new events"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object per line")):
    """Print the event history (of one app, or of all), and follow it."""
    services = _services(ctx)
    show = formatting.event_json if as_json else formatting.event_line
    feed_start = services.store.feed_last_id()
    names = [app] if app else services.store.apps()
    history = sorted((r for n in names for r in services.store.read(n)), key=lambda r: r.id)
    for r in history:
        print(show(r), flush=True)
    if follow:
        for new in services.store.follow(after_id=feed_start, app=app):
            if new is not None:
                print(show(new), flush=True)


@cli.command()
def queue(ctx: typer.Context,
          as_json: bool = typer.Option(False, "--json", help="a JSON object (with --watch: one per line)"),
          watch: bool = typer.Option(False, "--watch", "-w", help="refresh every second until Ctrl-C")):
    """What waits in each Celery queue, what runs, which retries and polls are due."""
    from rich.live import Live

    from orchestrator.observe.queue_view import inspect_queue
    services = _services(ctx)
    if as_json:
        while True:
            print(json.dumps(inspect_queue(services), indent=None if watch else 2), flush=True)
            if not watch:
                return
            time.sleep(1)
    if not watch or not out.is_terminal:      # piped: a new report each second, one after another
        while True:
            out.print(formatting.queue_tables(inspect_queue(services)))
            if not watch:
                return
            time.sleep(1)
    with Live(formatting.queue_tables(inspect_queue(services)), console=out, auto_refresh=False) as live:
        while True:
            time.sleep(1)
            live.update(formatting.queue_tables(inspect_queue(services)), refresh=True)


@cli.command()
def log(ctx: typer.Context, deployment_id: str,
        app: Optional[str] = typer.Option(None, "--app", help="the deployment's app [default: any]"),
        as_json: bool = typer.Option(False, "--json", help="a JSON object with the lines")):
    """A deployment's log: its steps, their timings and, for a failed one, why."""
    from orchestrator.observe.deployment_log import dumps, find_log
    services = _services(ctx)
    found = find_log(services, deployment_id, app and _app_name(services, app))
    if found is None:
        raise SluiceError(f"no deployment {deployment_id!r}" + (f" of app {app!r}" if app else ""))
    if as_json:
        print(dumps(found))
        return
    for line in found.lines:
        style = {"error": "bold red", "warning": "yellow"}.get(line.level)
        out.print(line.text(), style=style, markup=False, highlight=False)


@cli.command()
def sync(ctx: typer.Context, app: str,
         wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end"),
         timeout: float = typer.Option(600, help="seconds to wait with --wait")):
    """Check the app's source now and deploy its head (the portal's Sync button)."""
    from orchestrator.deploying.sync import sync_now
    services = _services(ctx)
    _report(services, app, sync_now(services, _app_name(services, app)), wait, timeout)


@cli.command()
def rollback(ctx: typer.Context, app: str,
             to: Optional[str] = typer.Option(None, "--to",
                                              help="deployment id [default: the previous successful one]")):
    """Switch the app back to a kept release at once, and pause automatic deployments."""
    from orchestrator.deploying.rollback import rollback as roll_back
    from orchestrator.observe.durations import MILLISECONDS, duration
    services = _services(ctx)
    started = time.perf_counter()
    d = roll_back(services, _app_name(services, app), to)
    out.print(f"{app}: rolled back to deployment {d.origin} (revision {d.revision[:12]}) in "
              f"{duration(time.perf_counter() - started, MILLISECONDS)} as deployment {d.id}; automatic "
              f"deployments are paused: `sluice resume {app}` follows the source again")


@cli.command()
def redeploy(ctx: typer.Context, app: str,
             deployment_id: Optional[str] = typer.Argument(None, help="[default: the active one]"),
             wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end")):
    """Deploy an earlier deployment's snapshot again, as a new deployment."""
    from orchestrator.deploying.operator_actions import redeploy as run_again
    services = _services(ctx)
    _report(services, app, run_again(services, _app_name(services, app), deployment_id), wait)


@cli.command()
def promote(ctx: typer.Context, from_app: str, to_app: str,
            wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end")):
    """Deploy what is live on FROM_APP to TO_APP (staging to production), without rebuilding."""
    from orchestrator.deploying.operator_actions import promote as promote_live
    services = _services(ctx)
    queued = promote_live(services, _app_name(services, from_app), _app_name(services, to_app))
    _report(services, to_app, queued, wait)


@cli.command()
def pause(ctx: typer.Context, app: str):
    """Stop automatic deployments of the app (changes are still recorded)."""
    from orchestrator.deploying.operator_actions import pause as pause_app
    services = _services(ctx)
    changed = pause_app(services, _app_name(services, app))
    out.print(f"{app}: automatic deployments {'paused' if changed else 'were already paused'}")


@cli.command()
def resume(ctx: typer.Context, app: str,
           wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end")):
    """Follow the source again: deploy its head now unless it is already live."""
    from orchestrator.deploying.operator_actions import resume as resume_app
    services = _services(ctx)
    _report(services, app, resume_app(services, _app_name(services, app)), wait)


@cli.command("import")
def import_(ctx: typer.Context, app: str, directory: Path,
            wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end")):
    """Deploy DIRECTORY as the release of an app not on continuous deployment yet (its files
    are also committed to the app's built-in Git repository)."""
    from orchestrator.deploying.import_export import import_directory
    services = _services(ctx)
    _report(services, app, import_directory(services, _app_name(services, app), directory), wait)


@cli.command()
def export(ctx: typer.Context, app: str, directory: Path):
    """Copy the app's active release into DIRECTORY (new or empty), writable."""
    from orchestrator.deploying.import_export import export_release
    services = _services(ctx)
    release = export_release(services, _app_name(services, app), directory)
    out.print(f"{app}: exported {release.name} to {directory}")


@cli.command()
def ftp(ctx: typer.Context):
    """Run the FTP/FTPS server (ftp.listen) for apps' files."""
    from orchestrator.access.ftp import serve_ftp
    services = _services(ctx)
    if not services.config.ftp.listen:
        raise ConfigError("ftp.listen is not set (e.g. ftp: {listen: 127.0.0.1:2121})")
    serve_ftp(services)


credentials_cli = typer.Typer(help="Deployment credentials for the built-in Git repository and FTP.",
                              no_args_is_help=True)
cli.add_typer(credentials_cli, name="credentials")


@credentials_cli.command("set")
def credentials_set(ctx: typer.Context, app: str, user: str):
    """Set the app's deployment user and password (asked for, or read from stdin; never an
    argument, which other users could see in the process list)."""
    from orchestrator.access.credentials import set_credentials
    services = _services(ctx)
    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    set_credentials(services, _app_name(services, app), user, password)
    out.print(f"{app}: deployment credentials set for user {user!r}")


@credentials_cli.command("show")
def credentials_show(ctx: typer.Context, app: str):
    """The app's deployment user and how to reach its files over Git, FTP and FTPS."""
    from orchestrator.access.credentials import credentials_of
    services = _services(ctx)
    stored = credentials_of(services, _app_name(services, app))
    if stored is None:
        raise SluiceError(f"app {app!r} has no deployment credentials: "
                          f"sluice credentials set {app} USER")
    out.print(formatting.connection_details(services.config, app, stored.user), highlight=False)


def _report(services: Services, app: str, queued, wait: bool, timeout: float = 600) -> None:
    if not queued.new:
        out.print(f"{app}: {queued.revision[:12]}: nothing new to deploy: {queued.reason}")
    else:
        out.print(f"{app}: deployment {queued.deployment_id} of {queued.revision[:12]} queued")
    if wait and queued.deployment_id:
        d = _wait_for_end(services, app, queued.deployment_id, timeout)
        out.print(f"{app}: deployment {d.id} {d.status}: {d.message}")
        raise typer.Exit(0 if d.status in (DeploymentStatus.SUCCESS, DeploymentStatus.SKIPPED) else 1)


def _wait_for_end(services: Services, app: str, deployment_id: str, timeout: float):
    """Poll the projection until the deployment ends; a progress bar while its snapshot
    downloads files (cloud sources report how many)."""
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=out, transient=True) as bar:
        task = None
        while True:
            d = services.projections.app(app).deployments[deployment_id]
            if d.terminal:
                return d
            if time.monotonic() > deadline:
                raise SluiceError(f"deployment {deployment_id} still {d.status} after {timeout:g}s")
            done, total = _progress(services, deployment_id)
            if total and task is None:
                task = bar.add_task(f"{app}: downloading", total=total)
            if task is not None:
                bar.update(task, completed=done, total=total)
            time.sleep(0.1)


def _progress(services: Services, deployment_id: str) -> tuple[int, int]:
    raw = services.redis.hgetall(keys.progress(deployment_id))
    return int(raw.get(b"done", 0)), int(raw.get(b"total", 0))


def _fail(label: str, message: str, code: int) -> None:
    err.print(f"{label}:", style="bold red", end=" ")
    err.print(message, markup=False, highlight=False)
    sys.exit(code)


# The options of every command (the callback's), taken after the command too, as kubectl and
# flux take theirs: `sluice deployments hello -c prod.yaml`. Typer only reads them before the
# command, so main() moves them there; no command may have an option of the same name.
GLOBAL_OPTIONS = ("--config", "-c", "--log-level", "--log-format")


def global_options_first(args: list[str]) -> list[str]:
    moved: list[str] = []
    rest: list[str] = []
    words = iter(args)
    for word in words:
        name = word.split("=", 1)[0] if word.startswith("--") else word[:2]
        if word == "--":                # what follows is arguments only
            return moved + rest + [word, *words]
        if name not in GLOBAL_OPTIONS:
            rest.append(word)
        elif word != name:              # --config=FILE, -cFILE
            moved.append(word)
        else:
            value = next(words, None)
            if value is None:           # left where it stands, for typer to refuse
                rest.append(word)
            else:
                moved += [word, value]
    return moved + rest


def main() -> None:
    try:
        cli(args=global_options_first(sys.argv[1:]))
    except ConfigError as exc:
        _fail("config error", str(exc), 2)
    except SluiceError as exc:
        _fail("error", str(exc), 1)
    except redis.ConnectionError as exc:
        _fail("error", f"cannot reach Redis: {exc}", 1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
