"""The commands that show state: apps, deployments, events, queue, log; and verify."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

import typer

from orchestrator.cli.app import app_name, cli, out, services_of
from orchestrator.core.errors import SluiceError
from orchestrator.core.page_sizes import HISTORY_PAGE
from orchestrator.observe.fleet_pages import CLI_PAGE, fleet_page

if TYPE_CHECKING:
    from orchestrator.observe.log_lines import LogLine


@cli.command()
def apps(ctx: typer.Context,
         limit: int = typer.Option(CLI_PAGE, "--limit", "-n", min=1, help="show the first N"),
         show_all: bool = typer.Option(False, "--all", help="show every configured app")):
    """The configured apps and what is live (the first 100 unless told)."""
    from orchestrator.cli.fleet_summary import load_keeping
    from orchestrator.cli.quick_apps import apps_text
    from orchestrator.runtime.services import Services
    config, summary = load_keeping(ctx.obj)
    page = fleet_page(config.apps, None if show_all else limit)
    views = dict(zip(page.names, Services.build(config).projections.apps(page.names)))
    print(apps_text(summary, page, views, None if show_all else limit))


@cli.command()
def deployments(ctx: typer.Context, app: str,
                as_json: bool = typer.Option(False, "--json", help="a JSON array, newest first"),
                limit: int = typer.Option(HISTORY_PAGE, "--limit", "-n", min=1,
                                          help="show the newest N"),
                show_all: bool = typer.Option(False, "--all", help="show every deployment the app had")):
    """An app's deployment history, newest first (the newest 20 unless told)."""
    import json

    from orchestrator.core import history_pages
    from orchestrator.observe import formatting
    services = services_of(ctx)
    page = history_pages.newest(services.projections, app_name(services, app), None if show_all else limit)
    if as_json:
        print(json.dumps([formatting.deployment_json(page.view, d) for d in page.deployments], indent=2))
        return
    table = formatting.deployments_table(page.as_view())
    if not show_all and len(page.deployments) == limit:
        table.caption = f"the newest {limit}: --limit N or --all for more"
    out.print(table)


@cli.command()
def events(ctx: typer.Context, app: Optional[str] = typer.Argument(None),
           follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new events"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object per line")):
    """Print the event history (of one app, or of all), and follow it."""
    from orchestrator.observe import formatting
    services = services_of(ctx)
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
    import json

    from rich.live import Live

    from orchestrator.observe import formatting
    from orchestrator.observe.queue_view import inspect_queue
    services = services_of(ctx)
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
    with Live(formatting.queue_tables(inspect_queue(services)), console=out.console, auto_refresh=False) as live:
        while True:
            time.sleep(1)
            live.update(formatting.queue_tables(inspect_queue(services)), refresh=True)


@cli.command()
def log(ctx: typer.Context, deployment_id: str,
        app: Optional[str] = typer.Option(None, "--app", help="the deployment's app [default: any]"),
        as_json: bool = typer.Option(False, "--json", help="a JSON object with the lines (with "
                                     "--follow: one JSON object per line)"),
        follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines (the "
                                    "build's output too) until the deployment ends")):
    """A deployment's log: its steps, their timings, its build's output and, for a failed
    one, why."""
    from orchestrator.observe.deployment_log import dumps, follow_log
    services = services_of(ctx)
    found = follow_log(services, deployment_id, app and app_name(services, app))
    if found is None:
        raise SluiceError(f"no deployment {deployment_id!r}" + (f" of app {app!r}" if app else ""))
    if as_json and not follow:
        print(dumps(found.log))
        return
    show = _json_line if as_json else _text_line
    for line in found.log.lines:
        show(line)
    for new in found.new_lines() if follow else ():
        if new is not None:
            show(new)


def _text_line(line: LogLine) -> None:
    style = {"error": "bold red", "warning": "yellow"}.get(line.level)
    out.print(line.text(), style=style, markup=False, highlight=False)


def _json_line(line: LogLine) -> None:
    import json
    print(json.dumps(line.to_json()), flush=True)


@cli.command()
def verify(ctx: typer.Context, app: Optional[str] = typer.Argument(None),
           repair: bool = typer.Option(False, "--repair", help="quarantine what is corrupt and "
                                       "redeploy the apps serving it, from their source")):
    """Hash the live releases' files and the store's blobs against what they should hold."""
    from orchestrator.deploying.verify import quarantine_findings, redeploy_damaged
    from orchestrator.deploying.verify import verify as verify_all
    from orchestrator.observe.store_metrics import record_corrupt_blobs
    from orchestrator.releases.snapshots import SnapshotStore
    services = services_of(ctx)
    store = SnapshotStore(services.config.data_dir / "store")
    report = verify_all(services, store, app and app_name(services, app))
    for finding in report.findings:
        out.print(finding.describe(), style="bold red", markup=False, highlight=False)
    for name in report.nothing_live:
        out.print(f"{name}: nothing live", style="dim")
    out.print(f"{report.files} file(s) of {len(report.live)} live release(s) and {report.blobs} "
              f"blob(s) hashed: {len(report.findings) or 'none'} corrupt")
    if repair and report.findings:
        record_corrupt_blobs(services.redis, "verify", quarantine_findings(store, report.findings))
        for name, queued in redeploy_damaged(services, store).items():
            out.print(f"{name}: redeploying as deployment {queued.deployment_id}, which fetches "
                      "the corrupt files from the source again")
    if report.findings:
        raise typer.Exit(1)
