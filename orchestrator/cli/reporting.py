"""What a command that queued a deployment prints, and `--wait`: the end of the deployment,
with a progress bar while a cloud source downloads files."""
from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING

import typer

from orchestrator.cli.app import out
from orchestrator.core.errors import SluiceError

if TYPE_CHECKING:
    from orchestrator.core import events as ev
    from orchestrator.runtime.services import Services


def report(services: Services, app: str, queued, wait: bool, timeout: float = 600) -> None:
    """What came of a request; exit 1 when nothing deploys the revision (it was rejected):
    what was asked for will not happen, and a script must not go on as if it would."""
    if queued.deployment_id is None:
        out.print(f"{app}: {queued.revision[:12]}: not deployed: {queued.reason}", markup=False,
                  highlight=False)
        raise typer.Exit(1)
    if not queued.new:
        out.print(f"{app}: {queued.revision[:12]}: nothing new to deploy: {queued.reason}")
    else:
        out.print(f"{app}: deployment {queued.deployment_id} of {queued.revision[:12]} queued")
    if wait and queued.deployment_id:
        from orchestrator.core.statuses import DeploymentStatus
        d = wait_for_end(services, app, queued.deployment_id, timeout)
        out.print(f"{app}: deployment {d.id} {d.status}: {d.message}")
        raise typer.Exit(0 if d.status in (DeploymentStatus.SUCCESS, DeploymentStatus.SKIPPED) else 1)


def wait_for_end(services: Services, app: str, deployment_id: str, timeout: float):
    """Follow the deployment's events until it ends: its build's output printed (dim) as it
    comes, bounded as the log is; a progress bar while its snapshot downloads files (cloud
    sources report how many)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from orchestrator.core.statuses import FINAL_STATUS
    from orchestrator.observe.deployment_log import follow_log
    deadline = time.monotonic() + timeout
    followed = follow_log(services, deployment_id, app)
    events = followed.new_events(block_ms=100) if followed else _ticks()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=out.console, transient=True) as bar:
        task = None
        for recorded in chain(followed.recorded if followed else (), events, _ticks()):
            if recorded is not None:
                _print_build_output(recorded.event)
            d = services.projections.app(app).deployments[deployment_id]
            # ended: once its own end came by, so the output recorded before it is all shown
            if d.terminal and (recorded is None or recorded.event.type in FINAL_STATUS):
                return d
            if time.monotonic() > deadline:
                raise SluiceError(f"deployment {deployment_id} still {d.status} after {timeout:g}s")
            done, total = _progress(services, deployment_id)
            if total and task is None:
                task = bar.add_task(f"{app}: downloading", total=total)
            if task is not None:
                bar.update(task, completed=done, total=total)
    raise AssertionError("unreachable: _ticks never ends")


def _ticks() -> Iterator[None]:
    """A look every 0.1 s, where there are no events to follow."""
    while True:
        time.sleep(0.1)
        yield None


def _print_build_output(event: ev.Event) -> None:
    from orchestrator.core import events as ev
    from orchestrator.observe.log_lines import build_lines
    if isinstance(event, ev.BuildOutput):
        for line in build_lines(event):
            out.print(f"{line.step}: {line.message}", style="dim", markup=False, highlight=False)


def _progress(services: Services, deployment_id: str) -> tuple[int, int]:
    from orchestrator.core import keys
    raw = services.redis.hgetall(keys.progress(deployment_id))
    return int(raw.get(b"done", 0)), int(raw.get(b"total", 0))
