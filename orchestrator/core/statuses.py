"""A deployment's status, and the one table of which event ends it in which status."""
from __future__ import annotations

from enum import StrEnum

from orchestrator.core.event_types import EventType


class DeploymentStatus(StrEnum):
    PENDING = "pending"             # queued, or waiting for its next attempt
    BUILDING = "building"           # fetching the revision into a snapshot
    DEPLOYING = "deploying"         # building, validating, materialising, switching
    ACTIVATING = "activating"       # switched; telling the app's host (activate)
    VERIFYING = "verifying"         # switched; probing the app's health
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"             # its snapshot was already live
    SUPERSEDED = "superseded"       # a newer deployment went instead

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def running(self) -> bool:
        return self in RUNNING


FINAL_STATUS: dict[EventType, DeploymentStatus] = {
    EventType.DEPLOYMENT_SUCCEEDED: DeploymentStatus.SUCCESS,
    EventType.DEPLOYMENT_FAILED: DeploymentStatus.FAILED,
    EventType.DEPLOYMENT_SKIPPED: DeploymentStatus.SKIPPED,
    EventType.DEPLOYMENT_SUPERSEDED: DeploymentStatus.SUPERSEDED,
}
TERMINAL = tuple(FINAL_STATUS.values())
RUNNING = (DeploymentStatus.BUILDING, DeploymentStatus.DEPLOYING, DeploymentStatus.ACTIVATING,
           DeploymentStatus.VERIFYING)
SWITCHED = (DeploymentStatus.ACTIVATING, DeploymentStatus.VERIFYING)   # the target shows it, unconfirmed
IN_PROGRESS = (DeploymentStatus.PENDING, *RUNNING)
