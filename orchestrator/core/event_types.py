"""Every event's name on the wire, apart from the events' classes (core/events.py): what
reads statuses and views without folding events (`sluice apps`) needs no more than this."""
from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Every event's name on the wire: its class's name."""
    UNKNOWN = "UnknownEvent"
    CHANGE_DETECTED = "ChangeDetected"
    DEPLOYMENT_QUEUED = "DeploymentQueued"
    DEPLOYMENT_STARTED = "DeploymentStarted"
    SNAPSHOT_BUILT = "SnapshotBuilt"
    DEPLOYMENT_RETRYING = "DeploymentRetrying"
    DEPLOYMENT_SUCCEEDED = "DeploymentSucceeded"
    DEPLOYMENT_SKIPPED = "DeploymentSkipped"
    DEPLOYMENT_FAILED = "DeploymentFailed"
    DEPLOYMENT_SUPERSEDED = "DeploymentSuperseded"
    APP_PAUSED = "AppPaused"
    APP_RESUMED = "AppResumed"
    RELEASES_PRUNED = "ReleasesPruned"
    CREDENTIALS_CHANGED = "CredentialsChanged"
    DRIFT_DETECTED = "DriftDetected"
    DRIFT_REPAIRED = "DriftRepaired"
    BUILD_STARTED = "BuildStarted"
    BUILD_OUTPUT = "BuildOutput"
    BUILD_SUCCEEDED = "BuildSucceeded"
    BUILD_FAILED = "BuildFailed"
    DEPLOYMENT_ACTIVATED = "DeploymentActivated"
    ACTIVATION_FAILED = "ActivationFailed"
    DEPLOYMENT_ROLLED_BACK = "DeploymentRolledBack"
    DEPLOYMENT_SWITCHED = "DeploymentSwitched"
    HEALTH_CHECK_STARTED = "HealthCheckStarted"
    HEALTH_CHECK_PASSED = "HealthCheckPassed"
    HEALTH_CHECK_FAILED = "HealthCheckFailed"
    REVISION_REJECTED = "RevisionRejected"
    NOTIFICATION_DELIVERED = "NotificationDelivered"
    NOTIFICATION_FAILED = "NotificationFailed"
