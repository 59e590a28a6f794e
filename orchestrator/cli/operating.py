"""The commands that change what is live: sync, rollback, redeploy, promote, pause, resume."""
from __future__ import annotations

import time
from typing import Optional

import typer

from orchestrator.cli.app import app_name, cli, out, services_of
from orchestrator.cli.reporting import report


@cli.command()
def sync(ctx: typer.Context, app: str,
         wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end"),
         timeout: float = typer.Option(600, help="seconds to wait with --wait"),
         rebuild: bool = typer.Option(False, "--rebuild", help="build without the cache of "
                                      "build layers (dependencies installed afresh)"),
         force: bool = typer.Option(False, "--force", help="deploy the head even if it was "
                                    "rejected (it rolled back by itself)")):
    """Check the app's source now and deploy its head (the portal's Sync button)."""
    from orchestrator.deploying.sync import sync_now
    services = services_of(ctx)
    queued = sync_now(services, app_name(services, app), rebuild=rebuild, force=force)
    report(services, app, queued, wait, timeout)


@cli.command()
def rollback(ctx: typer.Context, app: str,
             to: Optional[str] = typer.Option(None, "--to",
                                              help="deployment id [default: the previous successful one]")):
    """Switch the app back to a kept release at once, and pause automatic deployments (an
    app on hosts: the release is rolled out to them again, as a deployment)."""
    from orchestrator.deploying.rollback import rollback as roll_back
    from orchestrator.observe.durations import MILLISECONDS, duration
    services = services_of(ctx)
    started = time.perf_counter()
    d = roll_back(services, app_name(services, app), to)
    done = f"rolled back to deployment {d.origin} (revision {d.revision[:12]}) in " \
        f"{duration(time.perf_counter() - started, MILLISECONDS)} as deployment {d.id}" if d.terminal else \
        f"rolling back to deployment {d.origin} (revision {d.revision[:12]}) on its hosts as deployment " \
        f"{d.id} (`sluice deployments {app}` shows it)"
    out.print(f"{app}: {done}; automatic deployments are paused: `sluice resume {app}` follows the source again")


@cli.command()
def redeploy(ctx: typer.Context, app: str,
             deployment_id: Optional[str] = typer.Argument(None, help="[default: the active one]"),
             wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end"),
             rebuild: bool = typer.Option(False, "--rebuild", help="build its source's files "
                                          "again, without the cache of build layers")):
    """Deploy an earlier deployment's snapshot again, as a new deployment."""
    from orchestrator.deploying.operator_actions import redeploy as run_again
    services = services_of(ctx)
    report(services, app, run_again(services, app_name(services, app), deployment_id, rebuild), wait)


@cli.command()
def promote(ctx: typer.Context, from_app: str, to_app: str,
            wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end")):
    """Deploy what is live on FROM_APP to TO_APP (staging to production), without rebuilding."""
    from orchestrator.deploying.operator_actions import promote as promote_live
    services = services_of(ctx)
    queued = promote_live(services, app_name(services, from_app), app_name(services, to_app))
    report(services, to_app, queued, wait)


@cli.command()
def pause(ctx: typer.Context, app: str):
    """Stop automatic deployments of the app (changes are still recorded)."""
    from orchestrator.deploying.operator_actions import pause as pause_app
    services = services_of(ctx)
    changed = pause_app(services, app_name(services, app))
    out.print(f"{app}: automatic deployments {'paused' if changed else 'were already paused'}")


@cli.command()
def resume(ctx: typer.Context, app: str,
           wait: bool = typer.Option(False, "--wait", help="wait for the deployment to end")):
    """Follow the source again: deploy its head now unless it is already live."""
    from orchestrator.deploying.operator_actions import resume as resume_app
    services = services_of(ctx)
    report(services, app, resume_app(services, app_name(services, app)), wait)
