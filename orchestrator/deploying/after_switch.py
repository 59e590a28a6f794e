"""What follows the switch (issue 15): tell the app's host (`activate`), prove the release
healthy (`health`), and when either fails under `on_failure: rollback`, switch back to what
the target showed before, tell the host that, and reject the revision.

Every step is recorded before the next begins, so a worker that takes the deployment up
again after a crash knows where it stands from the deployment's view: switched (activate and
verify again), a rollback decided (do it), or rolled back (end the deployment).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from orchestrator.config.settings import AppConfig
from orchestrator.core import events as ev
from orchestrator.core.clock import Clock
from orchestrator.core.errors import ActivationFailed, HealthCheckFailed, PermanentError
from orchestrator.core.lease import Lease
from orchestrator.core.placeholders import fill
from orchestrator.core.projections import DeploymentView
from orchestrator.core.urls import sanitize_url
from orchestrator.deploying.activation import activate
from orchestrator.deploying.before_switch import Candidate, variables
from orchestrator.deploying.health import Probe, verify_health
from orchestrator.deploying.tls import verified_context
from orchestrator.releases.materialise import point_at

log = logging.getLogger("sluice.worker")
Record = Callable[..., bool]        # (event type, **fields) -> whether it was appended


@dataclass
class Switched:
    """A deployment whose release the target shows, not yet confirmed."""
    config: AppConfig
    candidate: Candidate
    lease: Lease
    data_dir: Path
    clock: Clock
    record: Record
    live_before: Callable[[], DeploymentView | None]     # the deployment live before it


def confirm(s: Switched, resumed: DeploymentView | None = None) -> dict[str, float]:
    """Activate and verify; the seconds each took. A failure that keeps the release is
    recorded and let be; one that rolls back raises (PermanentError) after the rollback.
    `resumed`: the deployment's view when a worker takes it up again after the switch."""
    if resumed is not None and (resumed.rollback or resumed.rolled_back):
        raise PermanentError(_finish_rollback(s, resumed))
    timings: dict[str, float] = {}
    if s.config.activate:
        timings["activate"] = _activate(s)
    if s.config.health is not None:
        timings["verify"] = _verify(s)
    return timings


def _activate(s: Switched) -> float:
    started = s.clock.now()
    try:
        activate(s.config.activate, s.candidate, s.data_dir)
    except ActivationFailed as exc:
        keep = s.config.on_failure == "keep"
        s.record(ev.ActivationFailed, reason=str(exc), kept=keep)
        if not keep:
            raise ActivationFailed(f"{exc}; {roll_back(s, str(exc))}") from None
    else:
        s.record(ev.DeploymentActivated, actions=len(s.config.activate),
                 seconds=round(s.clock.now() - started, 4))
    return round(s.clock.now() - started, 4)


def _verify(s: Switched) -> float:
    spec = s.config.health
    assert spec is not None
    started = s.clock.now()
    s.record(ev.HealthCheckStarted, url=sanitize_url(fill(spec.url, variables(s.candidate))))
    probes: list[Probe] = []
    with httpx.Client(follow_redirects=False, verify=verified_context()) as client:
        try:
            report = verify_health(spec, variables(s.candidate), clock=s.clock, client=client,
                                   on_probe=_log_probe(s.candidate, probes))
        except HealthCheckFailed as exc:
            keep = s.config.on_failure == "keep"
            s.record(ev.HealthCheckFailed, reason=str(exc), kept=keep, probes=len(probes),
                     seconds=round(s.clock.now() - started, 4))
            if not keep:
                raise HealthCheckFailed(f"{exc}; {roll_back(s, str(exc))}") from None
            return round(s.clock.now() - started, 4)
    s.record(ev.HealthCheckPassed, probes=report.probes, failures=report.failures,
             healthy_after_s=report.healthy_after_s, seconds=report.seconds,
             latency_ms=report.latency_ms)
    return round(s.clock.now() - started, 4)


def _log_probe(candidate: Candidate, probes: list[Probe]) -> Callable[[Probe], None]:
    def logged(probe: Probe) -> None:
        probes.append(probe)
        log.info("%s: deployment %s: health probe %s (%.1f ms)", candidate.app,
                 candidate.deployment_id, probe.detail, probe.seconds * 1000,
                 extra={"app": candidate.app, "deployment": candidate.deployment_id})
    return logged


def roll_back(s: Switched, reason: str) -> str:
    """Put back what the target showed before the switch, tell the host, reject the
    revision; what was done, for the deployment's reason."""
    c = s.candidate
    s.record(ev.RevisionRejected, revision=c.revision, reason=reason)
    point_at(s.config.target, c.previous, s.lease.token, s.lease.check)
    done = f"rolled back to release {c.previous.name}{_activate_previous(s)}" if c.previous \
        else "rolled back: nothing was live before, so the target was removed"
    s.record(ev.DeploymentRolledBack, release=str(c.previous) if c.previous else None, how=done)
    return done


def _activate_previous(s: Switched) -> str:
    if not s.config.activate:
        return ""
    c, before = s.candidate, s.live_before()
    again = Candidate(c.app, before.id if before else "", before.revision if before else "",
                      c.previous or c.release, c.release, c.target)
    try:
        activate(s.config.activate, again, s.data_dir)
    except ActivationFailed as exc:
        return f" (activating it failed too: {exc})"
    return ""


def _finish_rollback(s: Switched, d: DeploymentView) -> str:
    """A worker died while rolling back: do it (again) unless it was done; the reason."""
    reason = d.rollback or d.message
    if d.rolled_back:
        return f"{reason}; {d.message}" if d.message != reason else reason
    return f"{reason}; {roll_back(s, reason)}"


def resumed_candidate(app: str, d: DeploymentView, target: Path) -> Candidate:
    """The switched deployment a crashed worker left, as it was when it switched."""
    assert d.switched is not None
    return Candidate(app, d.id, d.revision, Path(d.switched),
                     Path(d.previous) if d.previous else None, target)


def switched_fields(candidate: Candidate, again: bool = False) -> dict[str, Any]:
    return {"release": str(candidate.release),
            "previous": str(candidate.previous) if candidate.previous else None, "again": again}
