"""Deployments whose worker was lost are picked up again within about lease_ttl.

A worker killed mid-deployment (kill -9, the OOM killer, a machine gone) leaves its
deployment `building` or `deploying`, and its task unacknowledged in the broker, which hands
it out again only after the visibility timeout (an hour by default). The app's lease tells sooner: its
holder renews it every lease_ttl/3, so a free lease under a running deployment means its
worker has been silent for lease_ttl. Every `sluice worker` runs a reaper thread that looks
at each app every `interval(lease_ttl)` seconds; a running deployment seen with its app's
lease free at two looks in a row (so not a worker between releasing the lease and
recording the end) lost its worker:
- `decide_lost` (pure) counts that as a failed attempt, as the runner counts any other:
  DeploymentRetrying with retry_in 0 (a lost worker is not the source's fault, there is
  nothing to wait for), DeploymentFailed when no attempts are left, DeploymentSuperseded
  when a newer deployment waits;
- the reaper then sends the next attempt (or the newer deployment) at once.
A worker that was only slow cannot switch the target after that (the lease's fencing
token), and the broker's late redelivery finds the deployment ended or superseded. The same
look ends a deployment whose task Celery dropped while Redis was away (a retry it could not
send is rejected without requeueing) once Redis is back.

A deployment waiting to run (queued, or between attempts) has a message in the broker, or
had one that is gone: taken by a worker killed before it recorded the message as held
(kombu's BRPOP, see deploy_messages.py), held by a worker that died past its countdown, or
never sent by a process that died between appending DeploymentQueued and sending it. The
same look compares the waiting deployments with the broker's messages: one that has no
message a worker can still be expected to run (`stranded`) at two looks in a row gets its
message sent again. A duplicate is harmless: the runner does nothing for a deployment that
ended or runs under another worker's lease.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import redis
from kombu.exceptions import OperationalError

from orchestrator.config.settings import AppConfig, RetryPolicy, SluiceConfig
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute_with_outcome
from orchestrator.core.errors import ConfigError
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.deploying.deploy_messages import DeployMessage, deploy_messages
from orchestrator.deploying.dispatch import enqueue
from orchestrator.deploying.retries import AfterFailure, FailedAttempt, decide_after_failure
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.reaper")

LOST = "the app's lease lapsed with the deployment unfinished: its worker was lost or cut off from Redis"
LONGEST_INTERVAL = 2.0
Suspect = tuple[str, int]       # (deployment id, attempt)
Task = tuple[str, str, int]     # (app, deployment id, attempt): a deploy message's arguments


def interval(lease_ttl: float) -> float:
    """Seconds between looks: a lost worker's deployment resumes within lease_ttl and two
    looks (at most 4 s) of its last renewal."""
    return min(LONGEST_INTERVAL, lease_ttl / 3)


def suspects(view: AppView, lease_free: bool) -> set[Suspect]:
    """The app's running deployments, if nobody holds its lease."""
    if not lease_free:
        return set()
    return {(d.id, d.attempts) for d in view.deployments.values() if d.status.running}


def decide_lost(view: AppView, suspect: Suspect, policy: RetryPolicy | None,
                now: float) -> tuple[list[ev.Event], AfterFailure | None]:
    """The events that end a lost attempt, unless the deployment moved on meanwhile."""
    deployment_id, attempt = suspect
    d = view.deployments.get(deployment_id)
    if d is None or not d.status.running or d.attempts != attempt:
        return [], None
    failed = FailedAttempt(view.name, deployment_id, attempt, LOST, now)
    events, after = decide_after_failure(view, failed, policy)
    if after.retry_in is None:
        return events, after
    return ([replace(e, retry_in=0.0) if isinstance(e, ev.DeploymentRetrying) else e
             for e in events], replace(after, retry_in=0.0))


def stranded(waiting: dict[str, list[DeploymentView]], messages: list[DeployMessage],
             now: float, grace: float) -> set[Task]:
    """The next attempt of each waiting deployment no message alive in the broker will run."""
    alive = {m.deployment_id for m in messages if m.alive(now, grace)}
    return {(app, d.id, d.attempts + 1) for app, ds in waiting.items() for d in ds
            if d.id not in alive}


class Reaper:
    """The loop around `decide_lost`. `config` is read at every look (a worker follows config
    changes, as its tasks do); what it asks of Redis can be given instead, for tests: whether
    an app's lease is free, how a deployment's task is sent, and the broker's messages."""

    def __init__(self, services: Services, config: Callable[[], SluiceConfig] | None = None,
                 lease_free: Callable[[str], bool] | None = None,
                 send: Callable[[str, str, int], None] | None = None,
                 messages: Callable[[], list[DeployMessage]] | None = None):
        self.services = services
        self.config = config or (lambda: services.config)
        self._lease_ttl = services.config.lease_ttl
        self.lease_free = lease_free or (lambda app: not services.redis.exists(keys.lease(app)))
        self.send = send or (lambda app, deployment_id, attempt:
                             enqueue(services, app, deployment_id, attempt))
        self.messages = messages or (lambda: deploy_messages(services.redis))
        self._seen: dict[str, set[Suspect]] = {}    # at the previous look, by app
        self._stranded: set[Task] = set()           # at the previous look
        self._unsent: list[Task] = []               # decided, not yet sent: Redis went away

    def look(self) -> list[tuple[str, Suspect, AfterFailure]]:
        """One look at every app; returns what was done about the lost deployments."""
        self._send()
        config = self.config()
        self._lease_ttl = config.lease_ttl
        done, waiting = [], {}
        for app in self.services.store.apps():
            view = self.services.projections.app(app)
            running = any(d.status.running for d in view.deployments.values())
            seen = suspects(view, running and self.lease_free(app))
            for suspect in sorted(seen & self._seen.get(app, set())):
                after = self._resume(app, suspect, config.apps.get(app))
                if after is not None:
                    done.append((app, suspect, after))
            self._seen[app] = seen
            waiting[app] = view.waiting()
        self._send_stranded(waiting)
        return done

    def _send_stranded(self, waiting: dict[str, list[DeploymentView]]) -> None:
        tasks = stranded(waiting, self.messages(), self.services.clock.now(),
                         self._lease_ttl) if any(waiting.values()) else set()
        for app, deployment_id, attempt in sorted(tasks & self._stranded):
            log.warning("%s: deployment %s waits with no message in the broker (lost with a "
                        "worker, or never sent): sending attempt %d again", app, deployment_id,
                        attempt, extra={"app": app, "deployment": deployment_id})
            self._unsent.append((app, deployment_id, attempt))
        self._send()
        self._stranded = tasks

    def _resume(self, app: str, suspect: Suspect, config: AppConfig | None) -> AfterFailure | None:
        _, appended, after = execute_with_outcome(
            self.services.projections, app,
            lambda view: decide_lost(view, suspect, config.retry if config else None,
                                     self.services.clock.now()))
        if not appended or after is None:
            return None
        deployment_id, attempt = suspect
        log.warning("%s: deployment %s: %s: %s", app, deployment_id, LOST, after.describe(),
                    extra={"app": app, "deployment": deployment_id, "event": after.verdict})
        if after.hand_over:
            waiting = self.services.projections.app(app).waiting()
            if waiting:
                self._unsent.append((app, waiting[-1].id, waiting[-1].attempts + 1))
        if after.retry_in is not None:
            self._unsent.append((app, deployment_id, attempt + 1))
        self._send()
        return after

    def _send(self) -> None:
        """Send what was decided; what Redis refused is sent at the next look."""
        while self._unsent:
            self.send(*self._unsent[0])
            self._unsent.pop(0)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(interval(self._lease_ttl)):
            try:
                self.look()
            except (redis.RedisError, OperationalError, ConfigError) as exc:    # look again later
                log.warning("looking for lost deployments failed: %s", exc)
            except Exception:
                log.exception("looking for lost deployments failed")


def start_reaper(services: Services, stop: threading.Event,
                 config: Callable[[], SluiceConfig] | None = None) -> threading.Thread:
    thread = threading.Thread(target=Reaper(services, config).run, args=(stop,), name="reaper",
                              daemon=True)
    thread.start()
    return thread
