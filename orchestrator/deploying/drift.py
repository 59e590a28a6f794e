"""Drift check and repair of one app: does its target show the active release, and if not,
put it back.

The check reads the disk without the lease; only drift (or a recorded drift to confirm gone)
takes the app's lease, so a repair never races a deployment or a rollback, and looks again
under it. Then `decide_repair` (pure) chooses: switch back with the same fenced switch a
deployment uses; redeploy the active snapshot when its release left the disk; wait for a
queued deployment that replaces it anyway; or leave alone a real folder or file in the
target's place, which Sluice never deletes. What was found is a `DriftDetected` event,
recorded again only when it changes; the target shown right again is a `DriftRepaired`.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute
from orchestrator.core.lease import Lease, LeaseBusy
from orchestrator.core.projections import AppView, DriftView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.operator_actions import redeploy
from orchestrator.releases.drift import Drift, DriftKind, find_drift, look
from orchestrator.releases.materialise import switch
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.drift")


@dataclass(frozen=True)
class Repair:
    """What a check does: `none` (the target is right, or it cannot be repaired), `switch`,
    `redeploy`, `wait` (for `deployment_id`, queued or running), `confirm` (a drift recorded
    before is gone: record that)."""
    action: str
    deployment_id: str | None = None


def decide_repair(view: AppView, found: Drift | None) -> Repair:
    if found is None:
        return Repair("confirm" if view.drift else "none")
    switched = next((d for d in view.history() if d.switched and not d.terminal), None)
    if switched is not None:        # its worker died after the switch: resuming it decides
        return Repair("wait", switched.id)
    if found.kind in (DriftKind.MISSING, DriftKind.ELSEWHERE):
        return Repair("switch")
    if found.kind == DriftKind.OCCUPIED:
        return Repair("none")
    unfinished = next((d for d in view.history() if not d.terminal), None)
    if unfinished is not None:      # it builds its release from the store and switches to it
        return Repair("wait", unfinished.id)
    tried = view.drift.deployment_id if view.drift and view.drift.kind == found.kind else None
    if tried and (d := view.deployments.get(tried)) and d.status == DeploymentStatus.FAILED:
        return Repair("none", tried)      # one redeploy per drift: its failure is for a person
    return Repair("redeploy")


def check_app(services: Services, app: str, holder: str | None = None) -> str:
    """Check one app's target, and repair it; returns what happened, for logs."""
    config = services.config.apps.get(app)
    view = services.projections.app(app)
    active = view.active
    if config is None or active is None or not active.release:
        return "nothing live"
    if config.hosts:        # its targets are its hosts', which converge by themselves
        return "on its hosts"
    if view.drift is None and find_drift(config.target, active.release,
                                         look(config.target, active.release)) is None:
        return "ok"
    try:
        lease = Lease(services.redis, app, holder or _holder(), services.config.lease_ttl).acquire()
    except LeaseBusy:
        return "a deployment holds the app's lease: checked again next round"
    with lease:
        return _repair(services, app, config.target, lease)


def _repair(services: Services, app: str, target: Path, lease: Lease) -> str:
    view = services.projections.app(app)      # afresh: a deployment may have ended meanwhile
    active = view.active
    if active is None or not active.release:
        return "nothing live"
    found = find_drift(target, active.release, look(target, active.release))
    repair = decide_repair(view, found)
    if found is None:
        if repair.action == "confirm":
            _repaired(services, app, active.release, _how(view))
        return "ok"
    deployment_id = repair.deployment_id
    if repair.action == "redeploy":
        deployment_id = redeploy(services, app).deployment_id
    _detected(services, app, target, found, repair.action, deployment_id)
    if repair.action != "switch":
        return f"{'left alone' if repair.action == 'none' else repair.action}: {found.detail}"
    switch(target, active.release, lease.token, lease.check)
    _repaired(services, app, active.release, "switched back")
    return "repaired"


def _detected(services: Services, app: str, target: Path, found: Drift, repair: str,
              deployment_id: str | None) -> None:
    event = ev.DriftDetected(app=app, at=services.clock.now(), kind=found.kind, target=str(target),
                             detail=found.detail, repair=repair, deployment_id=deployment_id)
    _, appended = execute(services.projections, app,
                          lambda v: [] if _recorded(v.drift, event) else [event])
    if appended:
        log.warning("%s: drift: %s; repair: %s%s", app, found.detail, repair,
                    f" ({deployment_id})" if deployment_id else "", extra={"app": app})


def _recorded(drift: DriftView | None, event: ev.DriftDetected) -> bool:
    return drift is not None and (drift.kind, drift.detail, drift.repair, drift.deployment_id) \
        == (event.kind, event.detail, event.repair, event.deployment_id)


def _repaired(services: Services, app: str, release: str, how: str) -> None:
    now = services.clock.now()
    _, appended = execute(services.projections, app, lambda v: [
        ev.DriftRepaired(app=app, at=now, kind=v.drift.kind, release=release, how=how)] if v.drift else [])
    if appended:
        log.info("%s: drift repaired (%s): the target shows %s", app, how, release, extra={"app": app})


def _how(view: AppView) -> str:
    drift = view.drift
    if drift and drift.deployment_id and drift.deployment_id == view.active_deployment:
        return f"deployment {drift.deployment_id} went live"
    return "found right"


def _holder() -> str:
    return f"drift-check {socket.gethostname()}:{os.getpid()}"
