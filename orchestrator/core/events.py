"""Event types (past tense) and their wire form in Redis Streams.

Every event carries the app it belongs to and `at`, the wall-clock time it happened.
Adding an optional field is compatible. Renaming or removing one changes the event's shape:
raise its class's `schema` and register an upcaster from the old shape (`@upcaster`), so
events recorded before are still read. An event recorded under a newer schema than this
code knows is refused (EventSchemaTooNew) rather than misread.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from orchestrator.core.errors import EventSchemaTooNew
from orchestrator.core.event_types import EventType

TRIGGERS = ("poll", "webhook", "push", "manual", "redeploy", "rollback", "promote", "import",
            "zipdeploy")


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[EventType, int], Upcaster] = {}


def upcaster(event_type: EventType, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning an event's data of schema `from_version` into the next."""
    def register(upcast: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = upcast
        return upcast
    return register


@dataclass(frozen=True)
class Event:
    app: str
    at: float

    registry: ClassVar[dict[str, type[Event]]] = {}
    schema: ClassVar[int] = 1       # the version of this event's shape that the code writes

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Event.registry[EventType(cls.__name__)] = cls    # a new event needs its EventType

    @property
    def type(self) -> EventType:
        return EventType(type(self).__name__)

    def to_fields(self) -> dict[str, str]:
        return {"type": self.type, "schema": str(self.schema),
                "data": json.dumps(dataclasses.asdict(self), sort_keys=True)}

    @staticmethod
    def from_fields(fields: dict[str, str]) -> Event:
        cls = Event.registry.get(fields["type"])
        if cls is None:
            return UnknownEvent(app="", at=0.0, name=fields["type"], raw=fields.get("data", ""))
        data = upcast(cls, int(fields.get("schema") or 1), json.loads(fields["data"]))
        known = _field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in known})


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type[Event]) -> frozenset[str]:
    # asked for each event read: a fleet's first scrape reads tens of thousands
    if (names := _FIELD_NAMES.get(cls)) is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


def upcast(cls: type[Event], version: int, data: dict[str, Any]) -> dict[str, Any]:
    """The event's data in the shape its class has now, from the shape recorded."""
    if version > cls.schema:
        raise EventSchemaTooNew(
            f"event {cls.__name__} of app {data.get('app')!r} was recorded with schema "
            f"{version}; this Sluice knows {cls.__name__} up to schema {cls.schema}: "
            "upgrade Sluice to read it")
    for step in range(version, cls.schema):
        upcast_step = UPCASTERS.get((EventType(cls.__name__), step))
        if upcast_step is not None:     # none: only fields were added at that step
            data = upcast_step(data)
    return data


@dataclass(frozen=True)
class UnknownEvent(Event):
    """An event written by a newer Sluice; kept so readers skip it instead of crashing."""
    name: str = ""
    raw: str = ""


@dataclass(frozen=True)
class ChangeDetected(Event):
    revision: str
    trigger: str
    previous: str | None = None


@dataclass(frozen=True)
class DeploymentQueued(Event):
    deployment_id: str
    revision: str
    trigger: str
    snapshot: str | None = None     # set: deploy this snapshot as it is (redeploy, promote)
    origin: str | None = None       # the deployment (maybe of another app) it comes from
    source: str | None = None       # fingerprint of the source settings the snapshot was built under
    rebuild: bool = False           # build without the cache of build layers
    # Who and what, as a zip deploy's client said (Kudu's deployer, author, message)
    deployer: str | None = None
    author: str | None = None
    author_email: str | None = None
    commit_message: str | None = None


@dataclass(frozen=True)
class DeploymentStarted(Event):
    deployment_id: str
    worker: str
    attempt: int = 1


@dataclass(frozen=True)
class SnapshotBuilt(Event):
    deployment_id: str
    snapshot: str
    files: int
    bytes: int
    blobs_added: int
    blobs_reused: int
    source: str = ""            # fingerprint of the source settings it was built under
    incremental: bool = False   # built from the live snapshot plus the source's changes
    seconds: float | None = None    # how long fetching and sealing took (for the log)
    # The revision's commit, where the source has commits (git, hg): who and what
    author: str | None = None
    author_email: str | None = None
    commit_message: str | None = None


@dataclass(frozen=True)
class BuildStarted(Event):
    """The source's snapshot needs a build (dependencies, a custom command): these steps."""
    deployment_id: str
    steps: list[str]
    why: str = ""               # what asked for it: "requirements.txt", ".deployment", ...


@dataclass(frozen=True)
class BuildOutput(Event):
    """Lines a build step printed, in batches (a build's log is bounded: `dropped` counts
    the lines left out)."""
    deployment_id: str
    step: str
    lines: list[str]
    dropped: int = 0


@dataclass(frozen=True)
class BuildSucceeded(Event):
    """The snapshot to deploy: the source's with what the build produced on top."""
    deployment_id: str
    snapshot: str
    cached: bool                # every step's output came from the cache: nothing ran
    seconds: float
    files_added: int
    bytes_added: int
    steps: dict | None = None   # step -> "cached" or the seconds it ran
    layers: list | None = None  # the keys of the layers put on the source, in order


@dataclass(frozen=True)
class BuildFailed(Event):
    """A build step failed; DeploymentFailed follows with the reason."""
    deployment_id: str
    step: str
    command: str
    exit_code: int | None
    tail: list[str]
    timed_out: str | None = None    # "timeout" or "idle_timeout": killed


@dataclass(frozen=True)
class DeploymentSwitched(Event):
    """The target is made to point at the deployment's release (recorded just before, so a
    worker dying in between switches again): what comes after (activate, health) confirms
    it or puts `previous` back; a worker taking the deployment up again after a crash goes
    on from here rather than build a release the target already shows."""
    deployment_id: str
    release: str
    previous: str | None            # the release the target showed before; None: nothing
    again: bool = False             # switched again by a worker resuming the deployment


@dataclass(frozen=True)
class DeploymentActivated(Event):
    """The app's activate actions ran after the switch: the host knows the new release."""
    deployment_id: str
    actions: int
    seconds: float


@dataclass(frozen=True)
class ActivationFailed(Event):
    """An activate action failed; `kept`: the release stays live (on_failure: keep), else a
    DeploymentRolledBack and DeploymentFailed follow."""
    deployment_id: str
    reason: str
    kept: bool


@dataclass(frozen=True)
class DeploymentRolledBack(Event):
    """The target shows what it showed before this deployment again (`release`; None: it
    was removed, nothing having been live)."""
    deployment_id: str
    release: str | None
    how: str


@dataclass(frozen=True)
class HealthCheckStarted(Event):
    """Probing the switched release's health began (its deadline counts from `at`)."""
    deployment_id: str
    url: str


@dataclass(frozen=True)
class HealthCheckPassed(Event):
    """The release answered healthy `healthy_after` times in a row, and stayed so for
    `stable_for`: the deployment succeeds."""
    deployment_id: str
    probes: int
    failures: int
    healthy_after_s: float
    seconds: float
    latency_ms: dict | None = None


@dataclass(frozen=True)
class HealthCheckFailed(Event):
    """The release did not become healthy by the deadline, or failed within stable_for;
    `kept`: it stays live anyway (on_failure: keep), else DeploymentRolledBack follows."""
    deployment_id: str
    reason: str
    kept: bool = False
    probes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class RevisionRejected(Event):
    """A revision rolled back by itself: automatic triggers do not deploy it again until an
    operator asks for it (`sluice redeploy`, `sluice sync --force`)."""
    revision: str
    deployment_id: str
    reason: str


@dataclass(frozen=True)
class DeploymentRetrying(Event):
    deployment_id: str
    attempt: int
    reason: str
    retry_in: float


@dataclass(frozen=True)
class DeploymentSucceeded(Event):
    deployment_id: str
    snapshot: str
    release: str
    steps: dict | None = None   # seconds each step after the snapshot took (validate,
                                # materialise, switch), for the deployment's log


@dataclass(frozen=True)
class DeploymentSkipped(Event):
    deployment_id: str
    snapshot: str
    reason: str


@dataclass(frozen=True)
class DeploymentFailed(Event):
    deployment_id: str
    reason: str
    step: str = ""                  # the step that failed (fetch, validate, ...), if one did
    steps: dict | None = None       # seconds the steps done before it took


@dataclass(frozen=True)
class DeploymentSuperseded(Event):
    """A newer change arrived before this deployment started: only the newest deploys."""
    deployment_id: str
    by: str


@dataclass(frozen=True)
class AppPaused(Event):
    reason: str


@dataclass(frozen=True)
class AppResumed(Event):
    pass


@dataclass(frozen=True)
class ReleasesPruned(Event):
    releases: list[str]


@dataclass(frozen=True)
class CredentialsChanged(Event):
    """The app's deployment credentials were set; the secret itself is never an event."""
    user: str


@dataclass(frozen=True)
class DriftDetected(Event):
    """A drift check found the target not showing the active release (releases/drift.py)."""
    kind: str                       # missing, elsewhere, release gone, occupied
    target: str
    detail: str                     # what was found, naming the paths
    repair: str                     # switch, redeploy, wait (a queued deployment replaces it), none
    deployment_id: str | None = None    # the redeploy queued, or the deployment waited for


@dataclass(frozen=True)
class DriftRepaired(Event):
    """The target shows the active release again."""
    kind: str                       # the drift that ended
    release: str
    how: str                        # switched back, redeployed as ..., found right


@dataclass(frozen=True)
class NotificationDelivered(Event):
    """A channel had an event: `delivery` (the X-Sluice-Delivery of its requests), the
    `event` told, the `channel`'s type, after `attempts` tries, answered `status`; the
    `deployment_id` the event is of, if any (a line of that deployment's log)."""
    delivery: str
    event: str
    channel: str
    attempts: int
    status: int
    deployment_id: str | None = None


@dataclass(frozen=True)
class NotificationFailed(Event):
    """A channel never had an event: its receiver refused it (a 4xx other than 429) or kept
    failing for all the tries; `reason` is its last answer or error; `deployment_id` as in
    NotificationDelivered."""
    delivery: str
    event: str
    channel: str
    attempts: int
    reason: str
    deployment_id: str | None = None


@dataclass(frozen=True)
class HostSwitched(Event):
    """An app's host (issue 19) switched its target to the deployment's release (its own
    path there); `previous`: what its target showed before (None: nothing). `converged`: a
    host catching up with the active deployment by itself, not a rollout's switch."""
    deployment_id: str
    host: str
    release: str
    previous: str | None = None
    converged: bool = False


@dataclass(frozen=True)
class HostFailed(Event):
    """A host could not switch to the deployment's release, or its release proved unhealthy
    there (then switched back: `rolled_back`), or it did not answer within host_timeout."""
    deployment_id: str
    host: str
    reason: str
    rolled_back: bool = False


@dataclass(frozen=True)
class HostRolledBack(Event):
    """A host that had switched was switched back to `release` (None: nothing) because the
    rollout failed elsewhere."""
    deployment_id: str
    host: str
    release: str | None = None

