"""After an attempt failed for a reason worth retrying: retry later, give up, or give way.

`decide_after_failure` is pure, decided on the app's view (the worker's runner appends its
events and acts on the outcome):
- a newer deployment waits: this one is superseded and the newer one starts now;
- no attempts are left (or the app left the configuration): the deployment fails;
- else it is retried after an exponential backoff with jitter.
A deployment that ended meanwhile gets no further events.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from orchestrator.config.settings import RetryPolicy
from orchestrator.core import events as ev
from orchestrator.core.backoff import backoff_delay
from orchestrator.core.events import EventType
from orchestrator.core.projections import AppView


@dataclass(frozen=True)
class FailedAttempt:
    app: str
    deployment_id: str
    attempt: int
    reason: str
    at: float


@dataclass(frozen=True)
class AfterFailure:
    verdict: EventType              # DeploymentSuperseded, DeploymentFailed or DeploymentRetrying
    retry_in: float | None = None   # set: send the next attempt after this many seconds
    hand_over: bool = False         # a newer deployment waits: start it now

    def describe(self) -> str:
        return f"retrying in {self.retry_in:.1f}s" if self.retry_in is not None else str(self.verdict)


def decide_after_failure(view: AppView, failed: FailedAttempt, policy: RetryPolicy | None,
                         rng: random.Random | None = None) -> tuple[list[ev.Event], AfterFailure]:
    f = failed
    d = view.deployments.get(f.deployment_id)
    ended = d is None or d.terminal
    newer = [w for w in view.waiting() if w.id != f.deployment_id]
    if newer:
        superseded = ev.DeploymentSuperseded(app=f.app, at=f.at, deployment_id=f.deployment_id,
                                             by=newer[-1].id)
        return ([] if ended else [superseded]), AfterFailure(superseded.type, hand_over=True)
    if policy is None or f.attempt >= policy.attempts:
        gave_up = ev.DeploymentFailed(app=f.app, at=f.at, deployment_id=f.deployment_id,
                                      reason=f"gave up after {f.attempt} attempts: {f.reason}")
        return ([] if ended else [gave_up]), AfterFailure(gave_up.type)
    delay = backoff_delay(f.attempt, policy.base, policy.max, rng)
    retrying = ev.DeploymentRetrying(app=f.app, at=f.at, deployment_id=f.deployment_id,
                                     attempt=f.attempt, reason=f.reason, retry_in=delay)
    return ([] if ended else [retrying]), AfterFailure(retrying.type, retry_in=delay)
