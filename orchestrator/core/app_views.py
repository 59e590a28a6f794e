"""An app's folded view — its status and recent deployments — as cached between readers
(core/projections.py folds events into it). Apart from the folding, so that what only shows
cached views (`sluice apps`) imports neither the events nor a Redis client."""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from orchestrator.core.statuses import DeploymentStatus

# a host's state in a deployment (DeploymentView.hosts); the last two followed by ": why"
HOST_SWITCHED, HOST_ROLLED_BACK, HOST_FAILED, HOST_UNHEALTHY = "switched", "rolled back", "failed", "unhealthy"


@dataclass
class DeploymentView:
    id: str
    revision: str
    trigger: str
    received_at: float
    status: DeploymentStatus = DeploymentStatus.PENDING
    snapshot: str | None = None
    source: str | None = None
    release: str | None = None
    message: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    preset_snapshot: str | None = None
    origin: str | None = None
    source_snapshot: str | None = None  # the source's snapshot, before a build added to it
    rebuild: bool = False
    switched: str | None = None         # the release the target was switched to, unconfirmed
    previous: str | None = None         # what the target showed before that switch
    rollback: str | None = None         # why the switch is to be undone (a failed activation
                                        # or health check), until DeploymentRolledBack
    rolled_back: bool = False
    resumed: int = 0                    # times a worker took it up again after its switch
    layers: list[str] | None = None     # the build layers its snapshot put on its source's
    deployer: str | None = None         # who and what: a zip deploy's client's words, or the
    author: str | None = None           # revision's commit (SnapshotBuilt)
    author_email: str | None = None
    commit_message: str | None = None
    hosts: dict[str, str] | None = None     # host -> switched, failed: why, rolled back (issue 19)

    @property
    def terminal(self) -> bool:
        return self.status.terminal


@dataclass
class DriftView:
    """The drift the last check recorded and not yet seen repaired (DriftDetected)."""
    kind: str
    detail: str
    repair: str
    deployment_id: str | None
    since: float


@dataclass
class AppView:
    name: str
    version: int = 0
    last_id: str | None = None
    last_revision: str | None = None
    active_deployment: str | None = None
    paused: str | None = None             # why automatic deployments are paused, if they are
    pruned: list[str] = field(default_factory=list)   # releases removed from disk
    drift: DriftView | None = None        # the target does not show the active release
    rejected: dict[str, str] = field(default_factory=dict)   # revision -> why it rolled back
    deployments: dict[str, DeploymentView] = field(default_factory=dict)
    hosts: dict[str, str | None] = field(default_factory=dict)     # host -> the deployment it runs

    @property
    def active(self) -> DeploymentView | None:
        return self.deployments.get(self.active_deployment) if self.active_deployment else None

    def history(self) -> list[DeploymentView]:
        """Deployments newest first."""
        return list(reversed(self.deployments.values()))

    def waiting(self) -> list[DeploymentView]:
        """Deployments queued but not yet running, oldest first."""
        return [d for d in self.deployments.values() if d.status == DeploymentStatus.PENDING]

    def kept_releases(self) -> list[str]:
        """Releases of successful deployments still on disk, newest first, no repeats."""
        pruned, seen = set(self.pruned), []
        for d in self.history():
            if d.status == DeploymentStatus.SUCCESS and d.release and d.release not in pruned \
                    and d.release not in seen:
                seen.append(d.release)
        return seen

    def to_json(self) -> bytes:
        return orjson.dumps(self)           # dicts keep their (queue) order

    @staticmethod
    def from_json(text: bytes) -> AppView:
        data = orjson.loads(text)
        data["deployments"] = {k: DeploymentView(**{**d, "status": DeploymentStatus(d["status"])})
                               for k, d in data["deployments"].items()}
        if data.get("drift"):
            data["drift"] = DriftView(**data["drift"])
        return AppView(**data)


def decoded_view(cached: bytes | None) -> AppView | None:
    try:
        return AppView.from_json(cached) if cached else None
    except (ValueError, TypeError, KeyError):
        return None     # written by another version of Sluice: replay instead
