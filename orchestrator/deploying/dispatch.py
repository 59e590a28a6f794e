"""Turn a detected change into a queued deployment: events first, then the Celery message.

Pollers, `sluice sync`, redeploy, promote, webhooks and pushes come through here. The rules,
decided by `decide_deployment` (pure) on the app's current view in one optimistic append:
- a change to the revision that is live, or already waiting, queues nothing new;
- a new deployment supersedes every older one that has not started yet, so changes that
  arrive during a deployment collapse into one deployment of the newest revision;
- while the app is paused, automatic changes are recorded but not deployed;
- a revision that rolled back by itself (rejected) is deployed again only when an operator
  asks for it: a redeploy, or a sync with `force` (or hands the files over again: import,
  zip deploy).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from orchestrator.core import events as ev
from orchestrator.core.decisions import execute_with_outcome
from orchestrator.core.deployment_ids import new_deployment_id
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.task_queue import send_deploy
from orchestrator.runtime.services import Services

AUTOMATIC = ("poll", "webhook", "push")
OPERATOR_CHOSEN = ("redeploy", "promote", "rollback")    # what is live is not the source's say
CHOSEN_FILES = ("import", "zipdeploy")      # files someone hands over: deployed even if once rejected


@dataclass(frozen=True)
class Queued:
    deployment_id: str | None   # None: nothing was queued (see reason)
    revision: str
    new: bool                   # False when an existing deployment covers this change
    reason: str = ""
    status: DeploymentStatus | None = None      # of the covering deployment
    declined: bool = False      # the request's `wanted` said no: nothing was recorded


@dataclass(frozen=True)
class DeploymentRequest:
    app: str
    revision: str
    trigger: str
    deployment_id: str          # the id a new deployment gets
    at: float
    snapshot: str | None = None
    origin: str | None = None
    source: str | None = None
    rebuild: bool = False       # build without the layer cache
    force: bool = False         # deploy the revision even if it was rejected
    who: Who | None = None


@dataclass(frozen=True)
class Who:
    """Who and what a client said it deploys (Kudu's zip deploy parameters)."""
    deployer: str | None = None
    author: str | None = None
    author_email: str | None = None
    commit_message: str | None = None


def request_deployment(services: Services, app: str, revision: str | Callable[[], str],
                       trigger: str, snapshot: str | None = None, origin: str | None = None,
                       source: str | None = None,
                       wanted: Callable[[AppView, str], bool] | None = None,
                       rebuild: bool = False, force: bool = False, who: Who | None = None) -> Queued:
    """`revision`, or how to read it: a source's head is read after the app's view, inside
    the optimistic append, so of two concurrent requests the one appended last read the newer
    head (read first, a late trigger could queue an older head over a newer one). `wanted`
    (view, revision) can decline a request: then nothing is appended and the result is a
    Queued with no deployment id."""
    def decide(view: AppView) -> tuple[list[ev.Event], Queued]:
        now = services.clock.now()
        chosen = revision() if callable(revision) else revision
        if wanted is not None and not wanted(view, chosen):
            return [], Queued(None, chosen, False, "the app is on its source's head, or "
                              "deploying it, or that revision failed or was rolled back",
                              declined=True)
        return decide_deployment(view, DeploymentRequest(
            app, chosen, trigger, new_deployment_id(now), now, snapshot, origin, source, rebuild,
            force, who))
    _, _, result = execute_with_outcome(services.projections, app, decide)
    if result.deployment_id and (result.new or result.status == DeploymentStatus.PENDING):
        # Pending: its message may have been lost (Redis went away between the append and
        # the send); a duplicate message is harmless, a missing one leaves it waiting forever.
        enqueue(services, app, result.deployment_id)
    return result


def behind_head(view: AppView, head: str) -> bool:
    """Whether an app should be brought to its source's `head` although the head did not
    move: nothing deploys it now, nothing paused the app (a rollback pauses it), and its last
    deployment of `head` neither failed nor found its files already live — it was
    superseded, or something older went live after it (a late or replayed trigger). What an
    operator put live (redeploy, promote, rollback) stays until the source moves."""
    active = view.active
    if view.paused or (active is not None and (active.revision == head
                                               or active.trigger in OPERATOR_CHOSEN)):
        return False
    tried = [d for d in view.deployments.values() if d.revision == head]
    return not tried or tried[-1].status in (DeploymentStatus.SUPERSEDED, DeploymentStatus.SUCCESS)


def decide_deployment(view: AppView, request: DeploymentRequest) -> tuple[list[ev.Event], Queued]:
    """The events a requested deployment appends to the app's stream, and what came of it."""
    r = request
    change: list[ev.Event] = [] if r.revision == view.last_revision else [ev.ChangeDetected(
        app=r.app, at=r.at, revision=r.revision, trigger=r.trigger, previous=view.last_revision)]
    covered = _covering(view, r.revision, r.trigger, r.snapshot)
    if covered is not None:
        return change, covered
    if view.paused and r.trigger in AUTOMATIC:
        return change, Queued(None, r.revision, False, f"app is paused ({view.paused})")
    if r.revision in view.rejected and not r.force and r.trigger not in (*OPERATOR_CHOSEN, *CHOSEN_FILES):
        return change, Queued(None, r.revision, False, rejected_reason(view, r.revision))
    queued = ev.DeploymentQueued(app=r.app, at=r.at, deployment_id=r.deployment_id,
                                 revision=r.revision, trigger=r.trigger, snapshot=r.snapshot,
                                 origin=r.origin, source=r.source, rebuild=r.rebuild,
                                 **asdict(r.who or Who()))
    superseded = [ev.DeploymentSuperseded(app=r.app, at=r.at, deployment_id=d.id, by=r.deployment_id)
                  for d in view.waiting()]
    return [*change, queued, *superseded], Queued(r.deployment_id, r.revision, True)


def rejected_reason(view: AppView, revision: str) -> str:
    return (f"revision {revision[:12]} was rejected: {view.rejected[revision]}; "
            f"`sluice sync {view.name} --force` deploys it anyway")


def _covering(view: AppView, revision: str, trigger: str, snapshot: str | None) -> Queued | None:
    """An existing deployment that already makes this change live, if any."""
    waiting = next((d for d in view.deployments.values() if not d.terminal
                    and d.revision == revision and d.preset_snapshot == snapshot), None)
    if waiting:
        return Queued(waiting.id, revision, False, f"deployment {waiting.id} is already {waiting.status}",
                      waiting.status)
    active: DeploymentView | None = view.active
    if trigger in AUTOMATIC and active and active.revision == revision and snapshot is None:
        return Queued(active.id, revision, False, f"revision is already live ({active.id})")
    return None


def enqueue(services: Services, app: str, deployment_id: str, attempt: int = 1,
            countdown: float | None = None) -> None:
    send_deploy(services.redis_url, app, deployment_id, attempt, services.clock.now(), countdown)
