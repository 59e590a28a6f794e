"""`sluice apps` as text: one row per app in columns (observe/text_columns.py), fit to the
terminal. Rich boxed it, at three times the interpreter's whole start
for 100 rows; and this module imports neither Rich nor the config's models, so the short
way of `sluice apps` (cli/quick_apps.py) prints what the long way prints. An app with hosts
lists them under its active deployment, each with the deployment it runs, those lagging
marked (observe/host_states.py)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from orchestrator.core.app_views import AppView
from orchestrator.observe.host_states import host_runs
from orchestrator.observe.text_columns import LEAST as LEAST_TEXT
from orchestrator.observe.text_columns import columns

HEADERS = ("APP", "LAYOUT", "SOURCE", "TARGET", "ACTIVE", "LAST DEPLOYMENT", "AUTOMATIC")
ID_WIDTH = 22       # a deployment id (20261201-235118-a1b2c3): copied into commands, never folded
# the app's name whole, ids whole (their revision or status may go to the next line)
LEAST = (None, LEAST_TEXT, LEAST_TEXT, LEAST_TEXT, ID_WIDTH, ID_WIDTH, LEAST_TEXT)


class AppFacts(NamedTuple):
    """What the config says of an app, as the table shows it."""
    name: str
    layout: str
    source: str         # as the source describes itself
    target: str
    hosts: tuple[str, ...] = ()     # where it lives (issue 19); none: where its workers build it


def fleet_table(apps: Iterable[AppFacts], views: Mapping[str, AppView], caption: str | None = None,
                width: int | None = None) -> str:
    """`width`: the terminal's, which the table fits (None: as wide as it is)."""
    text = columns(HEADERS, [_cells(app, views[app.name]) for app in apps], width, LEAST)
    return f"{text}\n{caption}" if caption else text


def _cells(app: AppFacts, view: AppView) -> list[str]:
    active = view.active
    last = next(iter(view.history()), None)
    target = f"{app.target}\n{drift_text(view)}" if view.drift else app.target
    automatic = "\n".join([f"paused: {view.paused}" if view.paused else "on", *rejected_lines(view)])
    live = "\n".join([f"{active.id} ({active.revision[:12]})" if active else "-",
                      *(run.text() for run in host_runs(view, app.hosts))])
    return [app.name, app.layout, app.source, target, live, f"{last.status} {last.id}" if last else "-", automatic]


def drift_text(view: AppView) -> str:
    """The drift as `sluice apps` and the dashboard show it (one wording for both); "" if none."""
    d = view.drift
    if d is None:
        return ""
    repair = {"switch": "switching back", "redeploy": f"redeploying as {d.deployment_id}",
              "wait": f"waiting for {d.deployment_id}"}.get(d.repair, "not repaired")
    return f"DRIFT ({repair}): {d.detail}"


def rejected_lines(view: AppView) -> list[str]:
    """The app's rejected revisions as `sluice apps` and the dashboard show them."""
    return [f"rejected {revision[:12]}: {reason}" for revision, reason in view.rejected.items()]
