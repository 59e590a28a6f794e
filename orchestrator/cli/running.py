"""The commands that run Sluice's services: up, worker, poller, notifier, api, ftp; and
check-config."""
from __future__ import annotations

import contextlib
from typing import Optional

import typer

from orchestrator.cli.app import cli, out, services_of
from orchestrator.core.errors import ConfigError


@cli.command("check-config")
def check_config(ctx: typer.Context):
    """Validate the configuration without starting anything."""
    from orchestrator.config.settings import load_config
    config = load_config(ctx.obj)
    out.print(f"{ctx.obj}: OK, {len(config.apps)} app(s), data_dir {config.data_dir}")
    for name, app in config.apps.items():
        out.print(f"  {name}: {app.source.describe()} -> {app.target}")


@cli.command()
def up(ctx: typer.Context):
    """Run everything: embedded Redis (unless redis_url is set), a worker and a poller."""
    from orchestrator.config.settings import load_config
    from orchestrator.runtime.supervisor import Supervisor
    config = load_config(ctx.obj)
    for name, app in config.apps.items():
        out.print(f"watching {name}: {app.source.describe()} every "
                  f"{app.source.poll_interval:g}s -> {app.target}")
    raise typer.Exit(Supervisor(config, ctx.obj, say=out.print).run())


@cli.command()
def worker(ctx: typer.Context, concurrency: int = typer.Option(1, help="parallel deployments"),
           host: Optional[str] = typer.Option(None, "--host", help="be this host of the apps that list it "
                                              "(its queue deploy.HOST; give it a data_dir of its own)")):
    """Run a deploy worker (a Celery worker on the `deploy` queue, or a host's on its own)."""
    from orchestrator.config.hosts import HOST_NAME
    from orchestrator.deploying.worker_main import run_worker
    if host is not None and not HOST_NAME.match(host):
        raise typer.BadParameter("a host name matches [a-z0-9][a-z0-9-]*", param_hint="--host")
    run_worker(services_of(ctx), concurrency, host)


@cli.command()
def poller(ctx: typer.Context, concurrency: int = typer.Option(16, help="head checks at once")):
    """Run the poller: head checks of due sources, deployments on change."""
    import logging
    import signal
    import threading

    from orchestrator.triggers.poller import Poller
    services = services_of(ctx)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("sluice.poller").info("polling %d app(s)", len(services.config.apps))
    Poller(services, concurrency=concurrency).run(stop)


@cli.command()
def notifier(ctx: typer.Context, name: str = typer.Option(
        "", help="its consumer name in the feed's group (default: the host's name)")):
    """Run the notifier: deliver the events the `notify:` channels want, at least once."""
    import signal
    import socket
    import threading

    from orchestrator.notifying.notifier import Notifier
    services = services_of(ctx)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The same name after a restart (kill -9, a container started again): it takes back at
    # once what it held when it died, instead of leaving it to another after claim_after.
    Notifier(services, consumer=name or socket.gethostname()).run(stop)


@cli.command()
def api(ctx: typer.Context):
    """Run the HTTP API (webhook receivers) on api.listen."""
    import uvicorn

    from orchestrator.api import create_app
    from orchestrator.api.server import server_config
    services = services_of(ctx)
    listen = services.config.api
    # log_config=None: uvicorn's records go through Sluice's logging (--log-format); at
    # shutdown requests in progress get 5 s, open event streams none (api/server.py)
    server = uvicorn.Server(server_config(create_app(services), host=listen.host, port=listen.port,
                                          log_level="info", log_config=None, timeout_graceful_shutdown=5))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:      # e.g. the port is taken: uvicorn has said why
        raise typer.Exit(3)


@cli.command()
def ftp(ctx: typer.Context):
    """Run the FTP/FTPS server (ftp.listen) for apps' files."""
    from orchestrator.access.ftp import serve_ftp
    services = services_of(ctx)
    if not services.config.ftp.listen:
        raise ConfigError("ftp.listen is not set (e.g. ftp: {listen: 127.0.0.1:2121})")
    serve_ftp(services)
