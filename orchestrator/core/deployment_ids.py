"""Deployment ids, `20240501-120001-ab12cd`: the UTC time the deployment was queued and six
random hex digits. Made here, read here, and a deployment found by its id here.

Ids are unique across apps. The apps' compact cached views know recent and live
deployments; an older one needs a full replay of its app's stream, which only an id of
this shape can be worth (anything else is in no history).
"""
from __future__ import annotations

import calendar
import re
import secrets
import time
from collections.abc import Iterable

from orchestrator.core.errors import NotFound
from orchestrator.core.projections import AppView, DeploymentView, Projections

TIME_FORMAT = "%Y%m%d-%H%M%S"
SHAPE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


def new_deployment_id(now: float) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(now)) + "-" + secrets.token_hex(3)


def well_formed(deployment_id: str) -> bool:
    return SHAPE.match(deployment_id) is not None


def time_of(deployment_id: str) -> float | None:
    """The UTC time a deployment id names, or None."""
    try:
        return float(calendar.timegm(time.strptime(deployment_id[:15], TIME_FORMAT)))
    except ValueError:
        return None


def find(projections: Projections, deployment_id: str, apps: Iterable[str],
         whole_history: bool = True) -> tuple[AppView, DeploymentView] | None:
    """The deployment with this id in one of `apps`, and the view holding it: every app's
    cached view first, then (unless not `whole_history`) each app's full replay."""
    apps = list(apps)
    loads = [projections.app]
    if whole_history and well_formed(deployment_id):
        loads.append(projections.history)
    for load in loads:
        for name in apps:
            view = load(name)
            if deployment_id in view.deployments:
                return view, view.deployments[deployment_id]
    return None


def of_app(projections: Projections, app: str, deployment_id: str) -> tuple[AppView, DeploymentView]:
    """The app's deployment with this id and the view holding it; NotFound if it has none."""
    found = find(projections, deployment_id, [app])
    if found is None:
        raise NotFound(f"app {app!r} has no deployment {deployment_id!r}")
    return found
